/** Bad usage or configuration, found before anything was done: the commands exit 2 on it. */
export class UsageError extends Error {
  override readonly name: string = "UsageError";
}
