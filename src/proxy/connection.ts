import type { Socket } from 'node:net';
import { errorMessage } from '../errors.js';
import type { Decision, DecisionQuery } from '../policy/index.js';
import { TLS_ALERT_HANDSHAKE_FAILURE } from './act/refuse.js';
import { startTunnel } from './act/tunnel.js';
import type { ConnectionTable, TrackedConnection } from './connection-table.js';
import type { ProxyContext } from './context.js';
import type { ProxyListener } from './events.js';
import { DEADLINE_REASON, SocketReader } from './inspect/socket-reader.js';
import type { End, Outcome, Refuse, Tunnel } from './outcome.js';

/** Inspects and decides one connection; hands back what to do with it. */
export type Handler = (connection: Connection) => Promise<Outcome>;

const CLOSED_REASON = 'closed';
const discard = (): void => undefined;

/**
 * The one owner of a client connection's life, from accept to the last socket's close. It
 * holds the client's slot in the ConnectionTable and gives it back exactly once, when every
 * socket it tracks (the client and each upstream it adopted) has closed, whatever closed them.
 * Handlers never close anything: they inspect and decide, and return an Outcome; the owner
 * refuses, splices (tunnel) or runs the inspected stream, and ends the connection.
 *
 * Nothing can outlive its limits: every tracked socket has an inactivity timeout from the
 * moment it is tracked (`idleTimeoutMs`, lowered to `halfClosedTimeoutMs` once a direction has
 * ended or the connection is being refused), phase deadlines are the owner's timers, and
 * `close()` destroys whatever is left.
 */
export class Connection implements TrackedConnection {
  readonly reader: SocketReader;
  judged: readonly DecisionQuery[] = [];
  private readonly live = new Set<Socket>();
  private readonly closing = new AbortController();
  private phase: { timer: NodeJS.Timeout; controller: AbortController } | null = null;
  private cutHandler: ((decision: Decision) => void) | null = null;
  private isReleased = false;

  constructor(
    readonly listener: ProxyListener,
    readonly client: Socket,
    readonly clientAddress: string,
    private readonly ctx: ProxyContext,
    private readonly table: ConnectionTable,
  ) {
    this.reader = new SocketReader(client);
    this.track(client);
  }

  /** Aborted once the connection is ending: the client is gone, or it is being closed. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  /**
   * A deadline for the current phase (the hello, a request head, the next request): the signal
   * aborts with DEADLINE_REASON after `ms`, or as the connection ends. One phase at a time: a new
   * deadline replaces the previous one.
   */
  deadline(ms: number): AbortSignal {
    this.clearDeadline();
    const controller = new AbortController();
    if (this.closing.signal.aborted) {
      controller.abort(CLOSED_REASON);
      return controller.signal;
    }
    this.phase = { controller, timer: setTimeout(() => controller.abort(DEADLINE_REASON), ms) };
    return controller.signal;
  }

  /** Takes an upstream socket over (its errors, its timeout, its close); false when the connection is already ending. */
  adopt(socket: Socket): boolean {
    if (this.closing.signal.aborted || this.isReleased) {
      socket.on('error', discard);
      socket.destroy();
      return false;
    }
    this.track(socket);
    return true;
  }

  /** Forgets an upstream the conversation is done with (HTTP, switching servers): it is destroyed. */
  retire(socket: Socket): void {
    socket.destroy();
  }

  /** One direction has ended (FIN): what is left must finish within the half-closed timeout of quiet. */
  halfClosed(): void {
    for (const socket of this.live) socket.setTimeout(this.ctx.limits.halfClosedTimeoutMs);
  }

  /** Called by the ConnectionTable when a policy change blocks what the connection was allowed on. */
  cut(decision: Decision): void {
    if (this.cutHandler !== null) this.cutHandler(decision);
    else this.close('reset');
  }

  /**
   * Ends the connection now: every socket it tracks is destroyed, with a TCP reset when `how`
   * is 'reset' (a refusal or a cut: the peers must not take it for a clean end).
   */
  close(how: 'reset' | 'destroy'): void {
    this.stop();
    for (const socket of this.live) {
      if (how === 'reset' && !socket.destroyed) socket.resetAndDestroy();
      else socket.destroy();
    }
  }

  /** Runs the handler, then acts on its outcome; a handler that throws is a bug, logged, and the connection closed. */
  async run(handler: Handler): Promise<void> {
    try {
      const outcome = await handler(this);
      if (outcome.kind !== 'stream') {
        this.act(outcome);
        return;
      }
      this.cutHandler = (decision) => outcome.stream.cut(decision);
      this.act(await outcome.stream.run());
    } catch (e: unknown) {
      this.ctx.report.logger.error({ err: errorMessage(e), stack: e instanceof Error ? e.stack : undefined, listener: this.listener }, 'proxy handler failed (a bug)');
      this.close('destroy');
    }
  }

  private act(outcome: Refuse | Tunnel | End): void {
    this.clearDeadline();
    if (outcome.kind === 'end') return this.finish();
    if (outcome.kind === 'refuse') return this.refuse(outcome);
    if (this.closing.signal.aborted || outcome.upstream.destroyed) {
      this.close('reset');
      return;
    }
    if (outcome.result !== null) this.ctx.report.result(this.listener, outcome.result);
    this.judged = outcome.judged;
    this.cutHandler = () => this.close('reset');
    startTunnel(this, outcome.upstream, outcome.forwarder);
  }

  private refuse(refusal: Refuse): void {
    const { report } = this.ctx;
    if (refusal.blockedBy !== undefined) report.blocked(this.listener, this.clientAddress, refusal.blockedBy.decision, refusal.blockedBy.name);
    else if (refusal.result !== null) report.result(this.listener, refusal.result);
    if (refusal.action === 'reset') this.close('reset');
    else if (refusal.action === 'close') this.close('destroy');
    else this.finish(refusal.action === 'tls-alert' ? TLS_ALERT_HANDSHAKE_FAILURE : refusal.action);
  }

  /**
   * A lingering close: the upstreams go, the client gets `bytes` (a refusal page or alert) and
   * FIN after what is already queued for it; whatever it still sends is read and dropped until
   * it closes too, within the half-closed timeout. Closing with its bytes unread would turn the
   * FIN into a reset that can discard the page before the client reads it.
   */
  private finish(bytes?: Buffer): void {
    this.reader.detach();
    for (const socket of this.live) if (socket !== this.client) socket.destroy();
    const { client } = this;
    if (client.destroyed) return;
    client.on('data', discard);
    this.halfClosed();
    if (bytes === undefined) client.end();
    else client.end(bytes);
    client.resume();
  }

  private track(socket: Socket): void {
    this.live.add(socket);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.ctx.report.logger.debug({ err: err.code ?? err.message, listener: this.listener, side: socket === this.client ? 'client' : 'upstream' }, 'proxy socket error');
    });
    socket.setTimeout(this.ctx.limits.idleTimeoutMs, () => this.close('destroy'));
    socket.once('close', () => {
      this.live.delete(socket);
      if (socket === this.client) this.stop();
      if (this.live.size === 0) this.release();
    });
  }

  private stop(): void {
    this.clearDeadline();
    if (!this.closing.signal.aborted) this.closing.abort(CLOSED_REASON);
  }

  private clearDeadline(): void {
    if (this.phase === null) return;
    clearTimeout(this.phase.timer);
    if (!this.phase.controller.signal.aborted) this.phase.controller.abort(CLOSED_REASON);
    this.phase = null;
  }

  private release(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    this.stop();
    this.table.close(this, this.client.bytesRead, this.client.bytesWritten);
  }
}
