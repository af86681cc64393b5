import { renderTemplate } from "./templates.ts";

export interface ChatTokens {
  bos_token: string;
  eos_token: string;
  image_token: string;
}

/**
 * The prompt text of one user turn with an image, after the system message when there is one,
 * rendered by the model's own chat template (from tokenizer_config.json), ready for the
 * assistant's answer. What the template makes of a system message is the model's business.
 * The single image token is expanded to the model's image sequence length after tokenization.
 */
export function renderUserPrompt(chatTemplate: string, tokens: ChatTokens, text: string, system?: string): string {
  const user = { role: "user", content: [{ type: "image" }, { type: "text", text }] };
  return renderTemplate(chatTemplate, {
    ...tokens,
    messages: system !== undefined ? [{ role: "system", content: [{ type: "text", text: system }] }, user] : [user],
    add_generation_prompt: true,
  });
}

/** Replaces each image token id by `count` copies, as LLaVA-style processors do. */
export function expandImageTokens(ids: readonly number[], imageTokenId: number, count: number): number[] {
  return ids.flatMap((id) => (id === imageTokenId ? Array<number>(count).fill(imageTokenId) : [id]));
}
