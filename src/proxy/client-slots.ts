/** Connections open per client address, capped (one client cannot take every slot). */
export class ClientSlots {
  private readonly open = new Map<string, number>();
  private readonly perClient: number;

  constructor(perClient: number) {
    this.perClient = perClient;
  }

  /** Takes a slot; false when the client already holds its maximum. */
  take(client: string): boolean {
    const count = this.open.get(client) ?? 0;
    if (count >= this.perClient) return false;
    this.open.set(client, count + 1);
    return true;
  }

  release(client: string): void {
    const count = this.open.get(client) ?? 0;
    if (count <= 1) this.open.delete(client);
    else this.open.set(client, count - 1);
  }
}
