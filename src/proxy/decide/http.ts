import type { Socket } from 'node:net';
import { DEFAULTS } from '../../config/defaults.js';
import type { Decision, DecisionQuery } from '../../policy/index.js';
import type { Endpoint } from '../../util/native-addon.js';
import { dialAddress, dialDestination, type DialOutcome } from '../act/dial.js';
import { forwardedHead } from '../act/request-out.js';
import { httpStatusResponse } from '../act/refuse.js';
import type { Connection } from '../connection.js';
import type { ProxyContext } from '../context.js';
import { ChunkedReader } from '../inspect/http-body.js';
import { ResponseReader } from '../inspect/http-response.js';
import { readHello } from '../inspect/hello-reader.js';
import { bodyLength, readRequestHead, type RequestHead } from '../inspect/request-head.js';
import { refuse, tlsAction, type End, type InspectedStream, type Refuse, type Tunnel } from '../outcome.js';
import { dialRefusal, helloRefusal, sniQuery } from './tls.js';

export interface HttpStreamOptions {
  /** Port for a Host without one. */
  upstreamPort: number;
  /**
   * Transparent mode: the address the client was connecting to, and the address decision the
   * connection was allowed on. Every request is judged on its Host together with this address
   * and port, and all go there (never re-resolved).
   */
  fixed: { destination: Endpoint; judged: DecisionQuery } | null;
}

/** One upstream connection and the responses it still owes. */
interface UpstreamLink {
  socket: Socket;
  /** `host:port` it was dialled for (explicit mode): a request elsewhere needs another upstream. */
  key: string;
  address: string;
  /** Methods of the requests sent whose final response has not fully come back, oldest first. */
  owed: string[];
  responses: ResponseReader;
  /** The server sent FIN or the socket closed: nothing more comes from it. */
  isEnded: boolean;
  /** It said it closes after a response (Connection: close): no more requests go to it. */
  isClosing: boolean;
  /** Its responses can no longer be told apart: forwarded until it closes, nothing more sent. */
  isUnframed: boolean;
  /** The last request sent asks to upgrade: 'awaiting' its answer, then the answer's status. */
  upgrade: 'awaiting' | number | null;
  listeners: { data: (chunk: Buffer) => void; ended: () => void };
}

type BodyForwarded = 'complete' | 'invalid' | 'client-gone' | 'upstream-gone' | 'timeout';

/** Largest body piece handed to upstream at once; bodies stream through. */
const BODY_PIECE_MAX_BYTES = 1 << 20;
const CONNECT_ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n');
const STATUS_FOR_HEAD_REASON: Record<string, number> = { 'head-too-large': 431 };

/**
 * Plain HTTP/1.x, the "inspected stream" outcome: every request on a connection is read and
 * decided, not only the first (keep-alive and pipelined requests head by head, bodies by their
 * declared length or chunked framing), and responses are followed as they go back, so the
 * stream always knows whether an answer is owed. That is what lets it switch upstreams between
 * requests, answer a refused request only after the answers before it, and end a connection a
 * policy change has cut as HTTP allows: at once when idle, after the answer in flight otherwise,
 * any further request getting 451. CONNECT (explicit mode) becomes a tunnel after deciding on
 * its host and on the SNI of the TLS inside.
 */
export class HttpStream implements InspectedStream {
  private link: UpstreamLink | null = null;
  private cutBy: Decision | null = null;
  private waiting: (() => void)[] = [];
  private interrupt = new AbortController();

  constructor(
    private readonly connection: Connection,
    private readonly ctx: ProxyContext,
    private readonly options: HttpStreamOptions,
  ) {
    connection.client.on('drain', () => this.link?.socket.resume());
    connection.signal.addEventListener('abort', () => this.poke(), { once: true });
  }

  cut(decision: Decision): void {
    this.cutBy = decision;
    this.poke();
  }

  async run(): Promise<Refuse | Tunnel | End> {
    const { reader } = this.connection;
    const { limits } = this.ctx;
    for (;;) {
      if (this.connection.signal.aborted) return refuse(null, 'close');
      const link = this.link;
      // The server closed, or said it would and has answered: so is the conversation.
      if (link !== null && (link.isEnded || (link.isClosing && link.owed.length === 0))) return { kind: 'end' };
      if (link?.isUnframed === true) {
        await this.until(() => link.isEnded || this.connection.signal.aborted);
        continue;
      }
      if (this.cutBy !== null && this.isIdle()) return { kind: 'end' };

      const parsed = readRequestHead(reader.buffered, { maxHeadBytes: limits.httpMaxHeadBytes });
      if (parsed.kind === 'need-more') {
        const hasPartial = reader.buffered.length > 0;
        if (reader.isEnded) {
          if (hasPartial) return this.after(refuse('invalid', httpStatusResponse(400)));
          // The client has said all it will: its FIN goes on, and the answers owed still come back.
          link?.socket.end();
          await this.until(() => this.isIdle() || this.connection.signal.aborted);
          return { kind: 'end' };
        }
        const waited = await reader.wait(this.waitSignal(hasPartial ? limits.clientHelloTimeoutMs : limits.idleTimeoutMs));
        if (waited === 'timeout') {
          if (hasPartial) return this.after(refuse('timeout', httpStatusResponse(400)));
          if (this.isIdle()) return { kind: 'end' };
        }
        continue;
      }
      if (parsed.kind === 'invalid' || parsed.kind === 'no-name') {
        const reason = parsed.kind === 'invalid' ? parsed.reason : 'no-host';
        return this.after(refuse(reason === 'head-too-large' ? 'too-large' : 'invalid', httpStatusResponse(STATUS_FOR_HEAD_REASON[reason] ?? 400)));
      }
      const ended = await this.request(parsed.head);
      if (ended !== null) return ended;
    }
  }

  /** One request: decided, sent to the right upstream with its body. Null: read the next one. */
  private async request(head: RequestHead): Promise<Refuse | Tunnel | End | null> {
    const { reader } = this.connection;
    const { fixed } = this.options;
    const client = this.connection.clientAddress;
    if (head.isConnect) {
      // A client that was not configured for a proxy has no business sending CONNECT.
      if (fixed !== null) return this.after(refuse('invalid', httpStatusResponse(405)));
      reader.take(head.headerBytes);
      await this.until(() => this.isIdle() || this.connection.signal.aborted);
      this.retireLink();
      return this.connect(head);
    }
    const host = head.host!;
    const port = head.port ?? this.options.upstreamPort;
    const query: DecisionQuery =
      fixed === null ? { name: host, port, layer: 'http', client } : { name: host, ip: fixed.destination.address, port: fixed.destination.port, layer: 'http', client };
    const decision = this.ctx.policy.decide(query);
    const blockedBy = decision.verdict === 'block' ? decision : this.cutBy;
    if (blockedBy !== null) return this.after(refuse('blocked', this.blockedPage(blockedBy, host), { decision: blockedBy, name: host }));

    // Another destination (or a server that is closing): the old one finishes its answers first.
    const key = fixed === null ? `${host}:${port}` : 'fixed';
    if (this.link !== null && (this.link.key !== key || this.link.isClosing || this.link.isEnded)) {
      await this.until(() => this.isIdle() || this.connection.signal.aborted);
      this.retireLink();
    }
    if (this.link === null) {
      const dialed = fixed === null ? await dialDestination(host, port, 'http', this.ctx.dial, this.connection) : await dialAddress(fixed.destination.address, fixed.destination.port, this.ctx.dial, this.connection, query);
      if (dialed.kind !== 'connected') return dialRefusal(dialed, host, this.refusalPage(dialed, host), this.ctx);
      this.link = this.openLink(dialed.socket, key, dialed.address);
    }
    const link = this.link;
    this.connection.judged = fixed === null ? [{ ...query, ip: link.address, proto: 'tcp' }] : [fixed.judged, query];

    // Never the client's bytes: the head as parsed and judged, written out again.
    reader.take(head.headerBytes);
    const forwarded = forwardedHead(head);
    link.owed.push(head.method);
    this.ctx.report.result(this.connection.listener, 'forwarded');
    if (!(await this.send(forwarded.bytes))) return null;
    const length = bodyLength(head);
    const body = length === 'chunked' ? await this.forwardChunked() : await this.forwardBytes(length);
    // A body cut short or malformed leaves the server with half a request: nothing sensible can follow.
    if (body === 'invalid') return refuse('invalid', 'reset');
    if (body === 'client-gone' || body === 'timeout') return refuse(null, 'close');
    if (forwarded.isUpgrade) {
      const upgraded = await this.awaitUpgrade(link);
      if (upgraded !== null) return upgraded;
    }
    if (head.hasConnectionClose) {
      await this.until(() => this.isIdle() || this.connection.signal.aborted);
      return { kind: 'end' };
    }
    return null;
  }

  /** CONNECT host:port: decided on the host, then on the SNI of the TLS inside, with the address dialled. */
  private async connect(head: RequestHead): Promise<Refuse | Tunnel> {
    const { reader } = this.connection;
    const client = this.connection.clientAddress;
    const host = head.host!;
    const port = head.port!;
    const decision = this.ctx.policy.decide({ name: host, port, layer: 'http', client });
    if (decision.verdict === 'block') return refuse('blocked', this.blockedPage(decision, host), { decision, name: host });
    const dialed = await dialDestination(host, port, 'http', this.ctx.dial, this.connection);
    if (dialed.kind !== 'connected') return dialRefusal(dialed, host, this.refusalPage(dialed, host), this.ctx);
    this.connection.client.write(CONNECT_ESTABLISHED);
    const judged = [dialed.judged];
    // Inside the tunnel: a TLS client says which server it wants in its SNI; that is judged too.
    const first = reader.buffered[0];
    if (first === undefined || first === 0x16) {
      const hello = await readHello(reader, { maxBytes: this.ctx.limits.clientHelloMaxBytes, signal: this.connection.deadline(this.ctx.limits.clientHelloTimeoutMs) });
      if ('failure' in hello) return helloRefusal(hello, this.ctx);
      const sni = sniQuery(hello.info.sni, dialed.address, port, client);
      const sniDecision = this.ctx.policy.decide(sni);
      if (sniDecision.verdict === 'block') return refuse('blocked', tlsAction(this.ctx.blockAction), { decision: sniDecision, name: hello.info.sni });
      judged.push(sni);
    }
    return { kind: 'tunnel', upstream: dialed.socket, forwarder: null, judged, result: 'forwarded' };
  }

  /**
   * After a request asking to upgrade (RFC 9931), nothing more from the client goes upstream
   * until the server has answered it: the client's next bytes stay in the reader (it is not read
   * on), and the answers before it are framed as they come. On 101 those bytes and the rest of
   * the connection belong to the new protocol: a tunnel to the destination already decided. On
   * any other answer they are read as the next requests, each judged. Null: carry on.
   */
  private async awaitUpgrade(link: UpstreamLink): Promise<Tunnel | End | null> {
    link.upgrade = 'awaiting';
    await this.until(() => link.upgrade !== 'awaiting' || link.isEnded || link.isUnframed || this.cutBy !== null || this.connection.signal.aborted);
    const answer = upgradeAnswer(link);
    link.upgrade = null;
    if (answer === 101) return { kind: 'tunnel', upstream: link.socket, forwarder: null, judged: this.connection.judged, result: null };
    // Cut while the server was still deciding: no protocol switch for a blocked destination.
    if (answer === 'awaiting' && this.cutBy !== null) return { kind: 'end' };
    return null;
  }

  private blockedPage(decision: Decision, host: string): Buffer {
    return httpStatusResponse(451, { appName: this.ctx.appName(decision.app), host });
  }

  /** The page for a request whose destination could not be dialled. */
  private refusalPage(dialed: Exclude<DialOutcome, { kind: 'connected' }>, host: string): Buffer {
    if (dialed.kind === 'blocked') return this.blockedPage(dialed.decision, host);
    return httpStatusResponse(dialed.kind === 'forbidden' ? 403 : 502);
  }

  /** A refusal sent once the answers owed before it are through (pipelined requests are answered in order). */
  private async after(refusal: Refuse): Promise<Refuse> {
    await this.until(() => this.isIdle() || this.connection.signal.aborted);
    return refusal;
  }

  /** No answer is owed: no upstream, it is gone, or every request sent has its full response. */
  private isIdle(): boolean {
    const link = this.link;
    return link === null || link.isEnded || (link.owed.length === 0 && !link.isUnframed);
  }

  private openLink(socket: Socket, key: string, address: string): UpstreamLink {
    const owed: string[] = [];
    const link: UpstreamLink = {
      socket,
      key,
      address,
      owed,
      isEnded: false,
      isClosing: false,
      isUnframed: false,
      upgrade: null,
      responses: new ResponseReader(
        () => owed[0],
        {
          head: (status) => {
            if (link.upgrade !== 'awaiting' || owed.length !== 1) return;
            link.upgrade = status;
            this.poke();
          },
          complete: (isLast) => {
            owed.shift();
            if (isLast) link.isClosing = true;
            this.poke();
          },
          switched: () => {
            // A 101 answers the upgrade request; to anything else it is a server gone wrong.
            if (link.upgrade === 'awaiting' && owed.length === 1) {
              link.upgrade = 101;
              // The rest of the connection is the new protocol's: the tunnel takes the socket over.
              this.detachLink(link);
            } else link.isUnframed = true;
            this.poke();
          },
          unframed: () => {
            link.isUnframed = true;
            this.poke();
          },
        },
        DEFAULTS.httpMaxResponseHeadBytes,
      ),
      listeners: {
        data: (chunk) => {
          try {
            link.responses.feed(chunk);
          } catch (e: unknown) {
            // Outside the handler's promise: a reader that throws must cost this connection, not the process.
            this.ctx.report.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'response reader failed (a bug)');
            this.connection.close('destroy');
            return;
          }
          const { client } = this.connection;
          if (!client.destroyed && !client.writableEnded && !client.write(chunk)) socket.pause();
        },
        ended: () => this.linkEnded(link),
      },
    };
    socket.on('data', link.listeners.data);
    socket.on('end', link.listeners.ended);
    socket.on('close', link.listeners.ended);
    return link;
  }

  private linkEnded(link: UpstreamLink): void {
    if (link.isEnded) return;
    link.isEnded = true;
    // A close-delimited body ends here; any other answer cut short must not look complete.
    if (!link.responses.ended() && link.responses.isMidResponse) {
      this.connection.close('reset');
      return;
    }
    this.poke();
  }

  private detachLink(link: UpstreamLink): void {
    // Paused: bytes that come before the next reader attaches stay in the socket.
    link.socket.pause();
    link.socket.off('data', link.listeners.data);
    link.socket.off('end', link.listeners.ended);
    link.socket.off('close', link.listeners.ended);
    if (this.link === link) this.link = null;
  }

  private retireLink(): void {
    const link = this.link;
    if (link === null) return;
    this.detachLink(link);
    this.connection.retire(link.socket);
  }

  /** Writes to the upstream with backpressure; false when it can take no more (it answered and closed). */
  private async send(bytes: Buffer): Promise<boolean> {
    const socket = this.link?.socket;
    if (socket === undefined || socket.destroyed || socket.writableEnded) return false;
    if (socket.write(bytes)) return true;
    await new Promise<void>((resolve) => {
      const settle = (): void => {
        socket.off('drain', settle);
        socket.off('close', settle);
        resolve();
      };
      socket.once('drain', settle);
      socket.once('close', settle);
    });
    return !socket.destroyed;
  }

  /** Waits for more of the body; what ended the wait when no bytes came. */
  private async moreBody(): Promise<BodyForwarded | null> {
    const waited = await this.connection.reader.wait(this.waitSignal(this.ctx.limits.idleTimeoutMs));
    if (waited === 'data') return null;
    if (waited === 'timeout') return 'timeout';
    if (waited === 'end' || this.connection.signal.aborted) return 'client-gone';
    return this.link === null || this.link.isEnded ? 'upstream-gone' : null;
  }

  private async forwardBytes(n: number): Promise<BodyForwarded> {
    const { reader } = this.connection;
    let left = n;
    while (left > 0) {
      if (reader.buffered.length === 0) {
        const stop = await this.moreBody();
        if (stop !== null) return stop;
        continue;
      }
      const piece = reader.take(Math.min(left, reader.buffered.length, BODY_PIECE_MAX_BYTES));
      left -= piece.length;
      if (!(await this.send(piece))) return 'upstream-gone';
    }
    return 'complete';
  }

  /** A chunked body (RFC 9112 7.1), checked by the one chunked reader as it streams through. */
  private async forwardChunked(): Promise<BodyForwarded> {
    const { reader } = this.connection;
    const body = new ChunkedReader(this.ctx.limits.httpMaxHeadBytes);
    for (;;) {
      if (reader.buffered.length > 0) {
        const step = body.read(reader.buffered);
        if (step.kind === 'invalid') return 'invalid';
        const piece = reader.take(step.used);
        if (piece.length > 0 && !(await this.send(piece))) return 'upstream-gone';
        if (step.isDone) return 'complete';
        if (reader.buffered.length > 0) continue;
      }
      const stop = await this.moreBody();
      if (stop !== null) return stop;
    }
  }

  /** A deadline for one wait, which also ends early when something happens (an answer, a cut). */
  private waitSignal(ms: number): AbortSignal {
    return AbortSignal.any([this.connection.deadline(ms), this.interrupt.signal]);
  }

  /** Resolves once `predicate` holds, checked after every event. */
  private async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Something happened (an answer completed, the upstream ended, a cut, the client left): waiters look again. */
  private poke(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const wake of waiting) wake();
    const interrupt = this.interrupt;
    this.interrupt = new AbortController();
    interrupt.abort('event');
  }
}


/** Read through a call: the answer is set by the response reader while awaitUpgrade waited. */
function upgradeAnswer(link: UpstreamLink): UpstreamLink['upgrade'] {
  return link.upgrade;
}
