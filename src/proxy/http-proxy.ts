import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import type { Decision } from '../policy/index.js';
import { abortTls, httpStatusResponse, type TlsBlockAction } from './actions.js';
import { dialAddress, dialDestination, splice, type DialDeps, type DialOutcome } from './dial.js';
import { bodyLength, readRequestHead, type RequestHead } from './http/index.js';
import { SocketReader } from './socket-reader.js';
import { readHello, reportBlocked, type ProxyEvents, type ProxyListener } from './tls-proxy.js';
import type { Endpoint } from '../util/native-addon.js';

export interface HttpProxyOptions extends ProxyEvents {
  dial: DialDeps;
  upstreamPort: number;
  blockAction: TlsBlockAction;
  headTimeoutMs: number;
  maxHeadBytes: number;
  clientHelloMaxBytes: number;
  idleTimeoutMs: number;
  logger: Logger;
  /**
   * Transparent mode: the address the client was connecting to. Every request is judged on
   * its Host together with this address and port, and all go there (never re-resolved).
   */
  destination?: Endpoint;
  /** Metrics label; 'http' unless the transparent listener handed the connection over. */
  listener?: ProxyListener;
}

const STATUS_FOR_HEAD_REASON: Record<string, number> = { 'head-too-large': 431 };
/** Largest body piece handed to upstream at once; bodies stream through. */
const BODY_CHUNK_LIMIT = 1 << 20;
/** Longest chunk-size or trailer line accepted in a chunked body. */
/** A request asking to switch protocols (RFC 9110 7.8). */
const UPGRADE_FIELD = /\r\nupgrade:/i;
const MAX_CHUNK_LINE_BYTES = 4096;

/**
 * Explicit HTTP proxy. Every request on a connection is read and decided, not only the first:
 * keep-alive and pipelined requests are walked head by head, bodies skipped by their declared
 * length or chunked framing. CONNECT opens a tunnel after deciding on its host, then reads the
 * ClientHello inside and decides on its SNI too.
 */
export async function handleHttpConnection(socket: Socket, options: HttpProxyOptions, done: () => void): Promise<void> {
  const reader = new SocketReader(socket);
  const report = options.onResult ?? (() => undefined);
  const listener = options.listener ?? 'http';
  const fixed = options.destination;
  const log = options.logger;
  let upstream: Socket | null = null;
  let upstreamKey = '';
  let isSwitching = false;

  /**
   * Ends the connection. With a response (a 4xx/5xx page), or when the server's last bytes
   * were already passed on and our side ended, it is a lingering close: FIN after the bytes,
   * then whatever the client still sends is read and dropped until it closes too (or the head
   * deadline passes): a client that never closes cannot hold the socket for good, and closing
   * with unread bytes would turn the FIN into an RST that can discard the page before the
   * client reads it.
   */
  const finish = (response?: Buffer): void => {
    upstream?.destroy();
    if (!socket.destroyed && (response !== undefined || socket.writableEnded)) {
      socket.removeAllListeners('data');
      socket.on('data', () => undefined);
      socket.setTimeout(options.headTimeoutMs, () => socket.destroy());
      if (response === undefined) socket.end();
      else socket.end(response);
      socket.resume();
    } else socket.destroy();
    done();
  };

  /** Resolves once `s` has closed (at once when it already has). */
  const closedOf = (s: Socket): Promise<void> =>
    new Promise((resolve) => {
      if (s.closed) resolve();
      else s.once('close', () => resolve());
    });

  /**
   * Lets the current upstream finish the responses it owes (it gets our FIN after the last
   * request and closes when done), then forgets it. Pipelined requests are answered in order:
   * a request refused or sent elsewhere waits until the ones before it are answered.
   */
  const releaseUpstream = async (): Promise<void> => {
    if (upstream === null) return;
    isSwitching = true;
    const previous: Socket = upstream;
    previous.end();
    await closedOf(previous);
    upstream = null;
    isSwitching = false;
  };

  const refuseDial = (outcome: Exclude<DialOutcome, { kind: 'connected' }>, host: string): Buffer => {
    if (outcome.kind === 'blocked') {
      reportBlocked(options, listener, socket.remoteAddress ?? '', outcome.decision, host);
      return httpStatusResponse(451, { app: outcome.decision.app, host });
    }
    log.info({ name: host, outcome: outcome.kind, reason: outcome.reason }, 'not forwarded');
    report(listener, outcome.kind === 'failed' ? 'dial-failed' : outcome.kind, null);
    return httpStatusResponse(outcome.kind === 'forbidden' ? 403 : 502);
  };

  /**
   * Writes to upstream with backpressure; false when upstream is gone (it may answer and close
   * before the body is sent: then 'drain' never comes, and waiting for it would hang).
   */
  const sendUpstream = async (bytes: Buffer): Promise<boolean> => {
    const target = upstream!;
    if (target.destroyed || target.writableEnded) return false;
    if (!target.write(bytes)) {
      await new Promise<void>((resolve) => {
        const settle = (): void => {
          target.off('drain', settle);
          target.off('close', settle);
          resolve();
        };
        target.once('drain', settle);
        target.once('close', settle);
      });
    }
    return !target.destroyed;
  };

  /** Sends `n` body bytes from the client to upstream as they arrive. */
  const forwardBytes = async (n: number): Promise<boolean> => {
    let left = n;
    while (left > 0) {
      if (reader.buffered.length === 0 && (await reader.wait(options.idleTimeoutMs)) !== 'data') return false;
      const piece = reader.take(Math.min(left, reader.buffered.length, BODY_CHUNK_LIMIT));
      left -= piece.length;
      if (!(await sendUpstream(piece))) return false;
    }
    return true;
  };

  /** One CRLF-terminated line of chunked framing, forwarded; null when malformed or gone. */
  const forwardLine = async (): Promise<Buffer | null> => {
    for (;;) {
      const eol = reader.buffered.indexOf('\r\n');
      if (eol !== -1) {
        const line = reader.take(eol + 2);
        return (await sendUpstream(line)) ? line : null;
      }
      if (reader.buffered.length > MAX_CHUNK_LINE_BYTES) return null;
      if ((await reader.wait(options.idleTimeoutMs)) !== 'data') return null;
    }
  };

  /** Streams a chunked body (RFC 9112 7.1) chunk by chunk; nothing larger than a line is buffered. */
  const forwardChunked = async (): Promise<boolean> => {
    for (;;) {
      const sizeLine = await forwardLine();
      if (sizeLine === null) return false;
      const sizeText = sizeLine.subarray(0, sizeLine.length - 2).toString('latin1').split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return false;
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // Trailer fields, then the empty line that ends the message.
        for (;;) {
          const line = await forwardLine();
          if (line === null) return false;
          if (line.length === 2) return true;
        }
      }
      if (!(await forwardBytes(size + 2))) return false;
    }
  };

  /**
   * The request's destination decides: an absolute-URI (or CONNECT) authority wins over Host
   * (RFC 9112 3.2.2), and it is also the address that is dialled.
   */
  const decideHead = (head: RequestHead, port: number): Decision => options.dial.policy.decide({ name: head.host, ip: fixed?.address, port: fixed?.port ?? port, layer: 'http' });

  const tunnel = async (head: RequestHead): Promise<void> => {
    const host = head.host!;
    const port = head.port ?? 443;
    const decision = decideHead(head, port);
    if (decision.verdict === 'block') {
      finish(refuseDial({ kind: 'blocked', decision }, host));
      return;
    }
    const outcome = await dialDestination(host, port, 'http', options.dial);
    if (outcome.kind !== 'connected') {
      finish(refuseDial(outcome, host));
      return;
    }
    upstream = outcome.socket;
    if (socket.destroyed) {
      // The client went away while the upstream was dialled.
      finish();
      return;
    }
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const leftover = reader.take(reader.buffered.length);
    // Inside the tunnel: a TLS client says which server it wants in its SNI; that is judged too.
    const first = leftover.length > 0 ? leftover[0] : undefined;
    let replay = leftover;
    if (first === undefined || first === 0x16) {
      socket.removeAllListeners('data');
      const hello = await readHello(socket, { timeoutMs: options.headTimeoutMs, maxBytes: options.clientHelloMaxBytes }, leftover);
      if ('failure' in hello) {
        if (hello.failure === 'closed') {
          finish();
          return;
        }
        report(listener, hello.failure === 'no-sni' ? 'no-sni' : hello.failure, null);
        upstream.destroy();
        abortTls(socket, options.blockAction);
        done();
        return;
      }
      const sniDecision = options.dial.policy.decide({ name: hello.info.sni, ip: outcome.address, port, layer: 'tls' });
      if (sniDecision.verdict === 'block') {
        reportBlocked(options, listener, socket.remoteAddress ?? '', sniDecision, hello.info.sni);
        upstream.destroy();
        abortTls(socket, options.blockAction);
        done();
        return;
      }
      replay = hello.bytes;
    }
    upstream.write(replay);
    report(listener, 'forwarded', null);
    socket.removeAllListeners('data');
    splice(socket, upstream, options.idleTimeoutMs, done);
    socket.resume();
  };

  for (;;) {
    // One request head, within the deadline and the cap.
    let parsed = readRequestHead(reader.buffered, { maxHeadBytes: options.maxHeadBytes });
    while (parsed.kind === 'need-more') {
      const waited = await reader.wait(reader.buffered.length === 0 && upstream !== null ? options.idleTimeoutMs : options.headTimeoutMs);
      if (waited !== 'data') {
        finish(waited === 'timeout' && reader.buffered.length > 0 ? httpStatusResponse(400) : undefined);
        return;
      }
      parsed = readRequestHead(reader.buffered, { maxHeadBytes: options.maxHeadBytes });
    }
    if (parsed.kind === 'invalid' || parsed.kind === 'no-name') {
      const reason = parsed.kind === 'invalid' ? parsed.reason : 'no-host';
      report(listener, reason === 'head-too-large' ? 'too-large' : 'invalid', null);
      finish(httpStatusResponse(STATUS_FOR_HEAD_REASON[reason] ?? 400));
      return;
    }
    const head = parsed.head;
    // The server already ended the conversation (and with it our side towards the client).
    if (upstream?.readableEnded === true || upstream?.destroyed === true) {
      finish();
      return;
    }
    if (head.isConnect && fixed !== undefined) {
      // A client that was not configured for a proxy has no business sending CONNECT.
      report(listener, 'invalid', null);
      finish(httpStatusResponse(405));
      return;
    }
    if (head.isConnect) {
      // The CONNECT head is ours; only what follows it belongs to the tunnel.
      reader.take(head.headerBytes);
      await releaseUpstream();
      return tunnel(head);
    }
    const host = head.host!;
    const port = head.port ?? options.upstreamPort;
    const decision = decideHead(head, port);
    if (decision.verdict === 'block') {
      await releaseUpstream();
      finish(refuseDial({ kind: 'blocked', decision }, host));
      return;
    }

    // A new destination: let the old one finish its responses, then dial the new one.
    if (upstream !== null && fixed === undefined && `${host}:${port}` !== upstreamKey) await releaseUpstream();
    const key = fixed === undefined ? `${host}:${port}` : upstreamKey;
    if (upstream === null) {
      const outcome = fixed === undefined ? await dialDestination(host, port, 'http', options.dial) : await dialAddress(fixed.address, fixed.port, options.dial);
      if (outcome.kind !== 'connected') {
        finish(refuseDial(outcome, host));
        return;
      }
      const connected = outcome.socket;
      upstream = connected;
      upstreamKey = key;
      connected.setTimeout(options.idleTimeoutMs, () => connected.destroy());
      connected.on('error', () => connected.destroy());
      connected.pipe(socket, { end: false });
      connected.on('end', () => {
        // The server closed: whatever it sent is the end of the conversation for the client too.
        if (!isSwitching) socket.end();
      });
    }
    const headBytes = reader.take(head.headerBytes);
    upstream.write(headBytes);
    report(listener, 'forwarded', null);
    if (UPGRADE_FIELD.test(headBytes.toString('latin1'))) {
      // WebSocket and other upgrades: after a 101 the bytes are no longer HTTP requests. The
      // destination has been decided; what follows is a tunnel to it.
      const connected: Socket = upstream;
      connected.unpipe(socket);
      connected.write(reader.take(reader.buffered.length));
      socket.removeAllListeners('data');
      connected.removeAllListeners('end');
      splice(socket, connected, options.idleTimeoutMs, done);
      socket.resume();
      return;
    }
    const length = bodyLength(head);
    const isBodyComplete = length === 'chunked' ? await forwardChunked() : await forwardBytes(length);
    if (!isBodyComplete) {
      finish();
      return;
    }
    if (head.hasConnectionClose) {
      await closedOf(upstream);
      finish();
      return;
    }
  }
}
