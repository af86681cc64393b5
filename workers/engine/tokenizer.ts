/**
 * The model's tokenizer (`@huggingface/tokenizers` over tokenizer.json + tokenizer_config.json)
 * and chat prompt rendering with the model's own template (shared/core/prompts/chat.ts).
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { expandImageTokens, renderUserPrompt } from "../../shared/core/prompts/chat.ts";
import { ModelFolderError } from "./errors.ts";
import type { ModelFolder } from "./model-folder.ts";

const DECODE = { skip_special_tokens: false, clean_up_tokenization_spaces: false } as const;

export class EngineTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly chatTemplate: string;
  private readonly chatTokens: { bos_token: string; eos_token: string; image_token: string };
  private readonly anchorText = new Map<number, string>();
  /** Number of ids the tokenizer knows (max id + 1); ids at or above it cannot be decoded. */
  readonly vocabSize: number;
  readonly imageTokenId: number;
  /** Image tokens per image; null when the family's processor computes it per image. */
  readonly imageSeqLength: number | null;
  /** The BOS id the tokenizer's post-processor puts in front of a prompt, if it adds one. */
  readonly addedBos: number | null;

  constructor(folder: Pick<ModelFolder, "dir" | "tokenizer" | "spec">) {
    const { tokenizer: files, spec } = folder;
    try {
      this.tokenizer = new Tokenizer(files.json, files.config);
    } catch (err) {
      throw new ModelFolderError(
        folder.dir,
        "tokenizer.json",
        `cannot be loaded by @huggingface/tokenizers (${(err as Error).message})`,
      );
    }
    this.chatTemplate = files.chatTemplate;
    this.chatTokens = { bos_token: files.bosToken, eos_token: files.eosToken, image_token: files.imageToken };
    let maxId = -1;
    for (const id of this.tokenizer.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.imageTokenId = spec.imageTokenId;
    this.imageSeqLength = spec.imageSeqLength;
    const imageId = this.tokenizer.token_to_id(files.imageToken);
    if (imageId !== spec.imageTokenId) {
      throw new ModelFolderError(
        folder.dir,
        "tokenizer.json",
        `image token ${JSON.stringify(files.imageToken)} has id ${imageId ?? "none"}; expected image_token_id ${spec.imageTokenId} from config.json`,
      );
    }
    const bare = this.tokenizer.encode("a", { add_special_tokens: false }).ids;
    const framed = this.tokenizer.encode("a", { add_special_tokens: true }).ids;
    this.addedBos = framed.length > bare.length && framed[0] !== bare[0] ? framed[0]! : null;
    for (const eos of spec.eosTokenIds) {
      if (eos >= this.vocabSize) {
        throw new ModelFolderError(
          folder.dir,
          "tokenizer.json",
          `has no token with eos id ${eos}; expected the eos_token_id of config.json in the vocabulary`,
        );
      }
    }
  }

  /** Token ids of plain text (no special tokens added; special tokens written in the text are kept). */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * A rendered prompt's ids as the model's processor makes them: with what the tokenizer's
   * post-processor adds (LLaVA's `<s>`, which its chat template leaves out), and BOS once when
   * the template writes it too.
   */
  encodePrompt(text: string): number[] {
    const ids = this.tokenizer.encode(text, { add_special_tokens: true }).ids;
    return this.addedBos !== null && ids[0] === this.addedBos && ids[1] === this.addedBos ? ids.slice(1) : ids;
  }

  /** The user turn with an image, rendered by the chat template, tokenized and with the image token expanded. */
  promptIds(userText: string): number[] {
    return this.imagePromptIds(this.renderPrompt(userText));
  }

  /** A rendered prompt tokenized with each image token expanded to the fixed image_seq_length (the bundled family). */
  imagePromptIds(prompt: string): number[] {
    if (this.imageSeqLength === null) {
      throw new Error("this model's image token count depends on the image; its family processor expands the prompt");
    }
    return expandImageTokens(this.encodePrompt(prompt), this.imageTokenId, this.imageSeqLength);
  }

  renderPrompt(userText: string, system?: string): string {
    return renderUserPrompt(this.chatTemplate, this.chatTokens, userText, system);
  }

  decode(ids: readonly number[]): string {
    return this.tokenizer.decode([...ids], DECODE);
  }

  /**
   * The text of `ids` as it continues a sequence whose last token is `anchor`. Decoders such as
   * Metaspace drop the leading space of the first token they see, so the continuation is decoded
   * behind its anchor and the anchor's own text is cut off again.
   */
  decodeContinuation(anchor: number | null, ids: readonly number[]): string {
    if (ids.length === 0) return "";
    if (anchor === null) return this.decode(ids);
    let head = this.anchorText.get(anchor);
    if (head === undefined) {
      head = this.decode([anchor]);
      this.anchorText.set(anchor, head);
    }
    const all = this.decode([anchor, ...ids]);
    return all.startsWith(head) ? all.slice(head.length) : this.decode(ids);
  }

  /** The vocabulary entry of an id (e.g. `▁many`), or undefined. */
  tokenString(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }
}
