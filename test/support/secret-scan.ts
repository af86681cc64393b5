/**
 * Looks for credentials in what a suite's processes printed or stored: every form a leak
 * could take (raw, percent-encoded, percent-decoded, JSON-escaped) and every piece between the
 * characters that used to end a redaction early (`/`, `@`, `:`, `%`, `#`), since a mask that
 * stops at one of them leaves the rest of the secret in clear.
 */

/** Pieces shorter than this could be ordinary words; the suites' secrets are made of longer ones. */
const MIN_PIECE = 5;

export function secretForms(secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)]);
  try {
    forms.add(decodeURIComponent(secret));
  } catch {
    // Not valid percent-encoding as a whole.
  }
  for (const piece of secret.split(/[/@:%#]/)) if (piece.length >= MIN_PIECE) forms.add(piece);
  return [...forms];
}

/** `where: "form"` for each form of each secret found in each text. */
export function findSecrets(texts: Iterable<[where: string, text: string]>, secrets: readonly string[]): string[] {
  const forms = secrets.flatMap(secretForms);
  const hits: string[] = [];
  for (const [where, text] of texts)
    for (const form of forms) if (text.includes(form)) hits.push(`${where}: ${JSON.stringify(form)}`);
  return hits;
}
