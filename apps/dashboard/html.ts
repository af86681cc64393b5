/**
 * HTML built by a tagged template that escapes every interpolated value unless it is already
 * `Html`, so item ids, questions and model text can never become markup.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

function fragment(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(fragment).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

/** `html\`<td>${text}</td>\`` — values are escaped; `Html` values and arrays of them are kept as they are. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += fragment(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** A path of URL segments, each percent-encoded: `href("runs", run, "items", item)` → `/runs/a/items/b`. */
export function href(...segments: string[]): string {
  return `/${segments.map(encodeURIComponent).join("/")}`;
}
