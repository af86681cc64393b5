/**
 * Secrets never reach output. Two nets, because neither alone is enough: every URL's password
 * is masked wherever it appears in a text (a URL may come from a user, a library's error or a
 * manifest), and every secret value this process has read from its configuration is masked
 * in every form it may be printed in (raw, percent-encoded, percent-decoded, JSON-escaped),
 * for the places a library prints a password without its URL.
 */

const MASK = "***";

// scheme://user:password@ — the password runs to the last `@` of the non-space run, so a password
// holding `/`, `@`, `:`, `%`, `#` or non-ASCII never ends the mask early. Over-masking a run
// whose path also holds an `@` only costs a less helpful message.
const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s:@/"'<>]*):(?:[^\s"']*|[^\s]*)@/gi;

/**
 * A value that is one URL (a setting): its password runs to the value's last `@`, spaces included.
 * `redactSecrets` cannot know where a URL inside free text ends, so it stops at whitespace.
 */
export function redactUrlValue(value: string): string {
  return redactSecrets(value.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^:@/]*)(?::[\s\S]*)?@(?=[^@]*$)/i, `$1$2:${MASK}@`));
}

/** Shorter values would mask ordinary words; no real credential is this short. */
const MIN_SECRET_LENGTH = 4;

const known = new Set<string>();

function formsOf(value: string): string[] {
  const forms = new Set([value, encodeURIComponent(value)]);
  try {
    forms.add(decodeURIComponent(value));
  } catch {
    // Not percent-encoded: the raw form is the only one.
  }
  for (const f of [...forms]) forms.add(JSON.stringify(f).slice(1, -1));
  return [...forms].filter((f) => f.length >= MIN_SECRET_LENGTH);
}

/** Remember a secret this process holds (a password, a key, a token), so `redactSecrets` masks it. */
export function rememberSecret(value: string | undefined): void {
  if (value === undefined) return;
  for (const form of formsOf(value)) known.add(form);
}

/** `text` with every URL password and every remembered secret masked. */
export function redactSecrets(text: string): string {
  let out = text.replace(URL_PASSWORD_RE, `$1$2:${MASK}@`);
  // Longest first, so a secret that contains another is masked whole.
  for (const secret of [...known].sort((a, b) => b.length - a.length)) out = out.split(secret).join(MASK);
  return out;
}
