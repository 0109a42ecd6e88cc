import type { Logger } from '../observability/logger.js';
import type { BlockEvent, Decision } from '../policy/index.js';

/** Where a connection (or QUIC flow) came in: the explicit listeners, or the intercepting ones. */
export const PROXY_LISTENERS = ['tls', 'http', 'transparent', 'quic'] as const;
export type ProxyListener = (typeof PROXY_LISTENERS)[number];

/**
 * How a connection (HTTP: a request) ended up; the `result` label of
 * portcullis_proxy_connections_total, a closed set.
 *
 * - policy-cut:     allowed when it opened, closed because a policy change now blocks it
 * - client-refused: the client is outside proxy.allowClients; closed at accept, nothing read
 */
export const PROXY_RESULTS = [
  'forwarded',
  'blocked',
  'invalid',
  'no-sni',
  'timeout',
  'too-large',
  'forbidden',
  'unresolved',
  'dial-failed',
  'limited',
  'not-intercepted',
  'policy-cut',
  'client-refused',
] as const;
export type ProxyResult = (typeof PROXY_RESULTS)[number];

/** What the proxy tells the rest of the gateway (metrics, the decisions log). */
export interface ProxyEvents {
  /** One per connection (or per HTTP request), with its outcome. */
  onResult?: (listener: ProxyListener, result: ProxyResult, blockedBy: Decision | null) => void;
  /** Called for every block, policy cuts included (the decisions log attaches here). */
  onBlocked?: (block: BlockEvent) => void;
  /** Called once when a client connection (or QUIC flow) is gone, with the bytes it sent and received. */
  onClosed?: (listener: ProxyListener, bytesFromClient: number, bytesToClient: number) => void;
}

/** The events with the logger they are logged through: one object handed to every part. */
export class ProxyReporter {
  constructor(
    private readonly events: ProxyEvents,
    readonly logger: Logger,
  ) {}

  result(listener: ProxyListener, result: ProxyResult): void {
    this.events.onResult?.(listener, result, null);
  }

  /** A block: logged, counted as `result` ('blocked', or 'policy-cut'), handed to onBlocked. */
  blocked(listener: ProxyListener, client: string, decision: Decision, name: string | null, result: 'blocked' | 'policy-cut' = 'blocked'): void {
    this.logger.info({ app: decision.app, layer: decision.layer, rule: decision.rule, name, listener, result }, 'blocked');
    this.events.onResult?.(listener, result, decision);
    this.events.onBlocked?.({ layer: decision.layer, app: decision.app, rule: decision.rule, name, client });
  }

  closed(listener: ProxyListener, bytesFromClient: number, bytesToClient: number): void {
    this.events.onClosed?.(listener, bytesFromClient, bytesToClient);
  }
}
