import type { Decision, DecisionQuery } from '../policy/index.js';
import type { PolicyView } from '../dns/index.js';
import { PROXY_LISTENERS, type ProxyListener, type ProxyReporter } from './events.js';

/** One open proxied connection or QUIC flow, as the table sees it. */
export interface TrackedConnection {
  readonly listener: ProxyListener;
  /** The client's address (IPv4-mapped IPv6 unmapped): the per-client slots count by it. */
  readonly clientAddress: string;
  /**
   * What it was allowed on (name, address, port, client), decided again on every policy
   * change. Empty while it is still being inspected: nothing has been allowed yet.
   */
  readonly judged: readonly DecisionQuery[];
  /** A policy change now blocks what it was allowed on: end it as the protocol allows. */
  cut(decision: Decision): void;
  /** The proxy is shutting down: end it now. */
  close(how: 'reset' | 'destroy'): void;
}

/**
 * Every open connection of every proxy listener: the one place that takes and gives back the
 * per-client slots, counts what is open by listener, and, when the policy changes, decides
 * each connection again on what it was allowed on and cuts those now blocked.
 *
 * `open` and `close` are the only way in and out; `close` is idempotent, so an owner may call
 * it from every path that ends a connection and the slot still comes back exactly once.
 */
export class ConnectionTable {
  private readonly entries = new Set<TrackedConnection>();
  private readonly perClient = new Map<string, number>();
  private readonly byListener: Record<ProxyListener, number> = Object.fromEntries(PROXY_LISTENERS.map((l) => [l, 0])) as Record<ProxyListener, number>;

  constructor(
    private readonly maxPerClient: number,
    private readonly reporter: ProxyReporter,
  ) {}

  /** Takes a slot for `entry`; false (and nothing taken) when its client holds its maximum. */
  open(entry: TrackedConnection): boolean {
    const count = this.perClient.get(entry.clientAddress) ?? 0;
    if (count >= this.maxPerClient) return false;
    this.perClient.set(entry.clientAddress, count + 1);
    this.byListener[entry.listener]++;
    this.entries.add(entry);
    return true;
  }

  /** Gives the slot back and reports the connection closed; a second call does nothing. */
  close(entry: TrackedConnection, bytesFromClient: number, bytesToClient: number): void {
    if (!this.entries.delete(entry)) return;
    const count = this.perClient.get(entry.clientAddress) ?? 0;
    if (count <= 1) this.perClient.delete(entry.clientAddress);
    else this.perClient.set(entry.clientAddress, count - 1);
    this.byListener[entry.listener]--;
    this.reporter.closed(entry.listener, bytesFromClient, bytesToClient);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Open connections by listener. */
  get active(): Record<ProxyListener, number> {
    return { ...this.byListener };
  }

  /** Every open connection, for shutdown. */
  all(): TrackedConnection[] {
    return [...this.entries];
  }

  /**
   * After a policy swap: each connection decided again on what it was allowed on; those now
   * blocked are counted (policy-cut), logged, and cut. Returns how many were cut.
   */
  recheck(policy: PolicyView): number {
    let cut = 0;
    for (const entry of [...this.entries]) {
      for (const query of entry.judged) {
        const decision = policy.decide(query);
        if (decision.verdict !== 'block') continue;
        this.reporter.blocked(entry.listener, entry.clientAddress, decision, typeof query.name === 'string' ? query.name : null, 'policy-cut');
        entry.cut(decision);
        cut++;
        break;
      }
    }
    return cut;
  }
}
