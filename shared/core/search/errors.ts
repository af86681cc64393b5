/** Every error the search raises names the item, so a driver can record the failure against it. */
export class SearchError extends Error {
  override readonly name = "SearchError";
  readonly itemId: string | null;

  constructor(itemId: string | null, message: string) {
    super(itemId === null ? message : `search for item ${JSON.stringify(itemId)}: ${message}`);
    this.itemId = itemId;
  }
}
