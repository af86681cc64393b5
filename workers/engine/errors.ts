/**
 * Engine errors. Each names what was wrong and what was expected, so a worker can record a
 * failed item (or refuse to start on a broken model) with a message a person can act on.
 */

/** The model folder is unusable: a file is missing, malformed, or breaks the contract. */
export class ModelFolderError extends Error {
  readonly dir: string;
  readonly file: string | null;
  readonly problem: string;
  constructor(dir: string, file: string | null, problem: string) {
    super(file === null ? `model folder ${dir}: ${problem}` : `${file}: ${problem} (model folder ${dir})`);
    this.name = "ModelFolderError";
    this.dir = dir;
    this.file = file;
    this.problem = problem;
  }
}

/** One item's input cannot be used (bad image, prompt too long …); other items are unaffected. */
export class ItemInputError extends Error {
  readonly itemId: string;
  readonly field: string;
  constructor(itemId: string, field: string, problem: string) {
    super(`item ${JSON.stringify(itemId)}: ${field}: ${problem}`);
    this.name = "ItemInputError";
    this.itemId = itemId;
    this.field = field;
  }
}

/** A request handed to the engine is invalid (unknown item context, bad request fields, …). */
export class EngineRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EngineRequestError";
  }
}
