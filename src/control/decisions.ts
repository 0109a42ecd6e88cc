import type { BlockEvent } from '../policy/index.js';

/** As kept in the ring: the time as a number, formatted only when read (blocks are a hot path). */
interface StoredDecision {
  atMs: number;
  block: BlockEvent;
}

export interface DecisionRecord {
  time: string;
  layer: BlockEvent['layer'];
  app: BlockEvent['app'];
  rule: string | null;
  name: string | null;
  /** Only when `admin.decisions.clientAddresses` is on. */
  client?: string;
}

/**
 * The most recent block decisions, in a fixed ring (no allocation beyond the records). Client
 * addresses are personal data: shown only when the operator turned them on; names (what was
 * looked up) can be turned off.
 */
export class DecisionLog {
  private readonly ring: (StoredDecision | undefined)[];
  private next = 0;
  private count = 0;

  constructor(
    capacity: number,
    private readonly keepClientAddresses: boolean,
    private readonly keepNames = true,
  ) {
    this.ring = new Array<StoredDecision | undefined>(capacity);
  }

  record(block: BlockEvent): void {
    this.ring[this.next] = { atMs: Date.now(), block };
    this.next = (this.next + 1) % this.ring.length;
    this.count = Math.min(this.count + 1, this.ring.length);
  }

  /** Newest first. */
  recent(limit: number): DecisionRecord[] {
    const out: DecisionRecord[] = [];
    for (let i = 1; i <= Math.min(limit, this.count); i++) {
      const { atMs, block } = this.ring[(this.next - i + this.ring.length) % this.ring.length]!;
      const record: DecisionRecord = { time: new Date(atMs).toISOString(), layer: block.layer, app: block.app, rule: block.rule, name: this.keepNames ? block.name : null };
      if (this.keepClientAddresses) record.client = block.client;
      out.push(record);
    }
    return out;
  }
}
