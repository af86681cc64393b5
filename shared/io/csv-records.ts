/** CSV records from lines (RFC 4180: quoted fields may hold commas, doubled quotes and newlines). */
import { numbered } from "./lines.ts";

export type CsvRecord = { ok: true; line: number; fields: string[] } | { ok: false; line: number; reason: string };

/**
 * Split lines into CSV records. A quoted field may span lines; one left open for more than
 * `maxRecordLines` lines (or to the end of input) is reported at the line it opened on, and
 * parsing resumes on the next line, so one stray quote cannot swallow the rest of the file.
 */
export async function* csvRecords(lines: AsyncIterable<string>, maxRecordLines = 200): AsyncGenerator<CsvRecord> {
  const it = numbered(lines)[Symbol.asyncIterator]();
  const replay: { text: string; no: number }[] = [];
  const next = async () => {
    if (replay.length > 0) return replay.shift();
    const r = await it.next();
    return r.done ? undefined : r.value;
  };

  for (;;) {
    const first = await next();
    if (first === undefined) return;
    if (first.text.trim() === "") continue;

    const consumed = [first];
    const st: CsvState = { fields: [], field: "", inQuotes: false, afterQuote: false, atStart: true };
    let error = parseCsvLine(st, first.text);
    while (error === undefined && st.inQuotes) {
      if (consumed.length >= maxRecordLines) {
        error = `a quoted field opened on line ${first.no} is still open after ${maxRecordLines} lines; expected a closing "`;
        break;
      }
      const more = await next();
      if (more === undefined) {
        error = `a quoted field opened on line ${first.no} is never closed; expected a closing "`;
        break;
      }
      consumed.push(more);
      st.field += "\n";
      error = parseCsvLine(st, more.text);
    }
    if (error !== undefined) {
      yield { ok: false, line: first.no, reason: error };
      replay.unshift(...consumed.slice(1));
      continue;
    }
    st.fields.push(st.field);
    yield { ok: true, line: first.no, fields: st.fields };
  }
}

interface CsvState {
  fields: string[];
  field: string;
  inQuotes: boolean;
  afterQuote: boolean;
  atStart: boolean;
}

/** Feed one physical line; returns an error reason or undefined. Leaves the last field open. */
function parseCsvLine(st: CsvState, line: string): string | undefined {
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (st.inQuotes) {
      if (ch === '"') {
        if (line[i + 1] === '"') {
          st.field += '"';
          i++;
        } else {
          st.inQuotes = false;
          st.afterQuote = true;
        }
      } else {
        st.field += ch;
      }
      continue;
    }
    if (ch === ",") {
      st.fields.push(st.field);
      st.field = "";
      st.afterQuote = false;
      st.atStart = true;
      continue;
    }
    if (st.afterQuote) {
      return `unexpected ${JSON.stringify(ch)} after the closing quote of field ${st.fields.length + 1}; expected a comma or the end of the line (write a quote inside a quoted field as "")`;
    }
    if (ch === '"' && st.atStart) {
      st.inQuotes = true;
      st.atStart = false;
      continue;
    }
    st.atStart = false;
    st.field += ch;
  }
  return undefined;
}
