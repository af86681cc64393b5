/**
 * Print the table of the OpenAI batch body fields stagebeam reads (what each does, or why it is
 * ignored), made from shared/io/openai-batch.ts, or keep a Markdown file's copy of it up to date
 * between the markers
 *   <!-- openai-fields:start --> ... <!-- openai-fields:end -->
 *
 *   tsx scripts/openai-fields-table.ts [--write README.md | --check README.md]
 */
import { HONOURED_OPENAI_FIELDS, IGNORED_OPENAI_FIELDS } from "../shared/io/openai-batch.ts";
import { docTableMain } from "./doc-table.ts";

export const START = "<!-- openai-fields:start -->";
export const END = "<!-- openai-fields:end -->";

export function openaiFieldsMarkdown(): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const honoured = Object.entries(HONOURED_OPENAI_FIELDS).map(([f, what]) => `| \`${f}\` | honoured | ${esc(what)} |`);
  const ignored = Object.entries(IGNORED_OPENAI_FIELDS).map(
    ([f, why]) => `| \`${f}\` | accepted, ignored (one warning a run) | ${esc(why)} |`,
  );
  const other = "| any other field | accepted, ignored (one warning a run) | not a chat-completion field stagebeam knows |";
  return `${["| `body` field | | what it does |", "|---|---|---|", ...honoured, ...ignored, other].join("\n")}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await docTableMain(
    { script: "openai-fields-table.ts", what: "OpenAI fields table", start: START, end: END, markdown: openaiFieldsMarkdown },
    process.argv.slice(2),
  );
}
