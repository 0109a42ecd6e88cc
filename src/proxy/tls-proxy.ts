import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import type { BlockEvent, Decision } from '../policy/index.js';
import { abortTls, type TlsBlockAction } from './actions.js';
import { dialDestination, splice, type DialDeps } from './dial.js';
import { DownstreamForwarder } from './forward.js';
import { readClientHello, type ClientHelloInfo } from './tls/client-hello.js';

export type ProxyResult = 'forwarded' | 'blocked' | 'invalid' | 'no-sni' | 'timeout' | 'too-large' | 'forbidden' | 'unresolved' | 'dial-failed' | 'limited' | 'not-intercepted';

/** Where a connection (or QUIC flow) came in: the explicit listeners, or the intercepting ones. */
export type ProxyListener = 'tls' | 'http' | 'transparent' | 'quic';

export interface ProxyEvents {
  /** One per connection (or per HTTP request), with its outcome. */
  onResult?: (listener: ProxyListener, result: ProxyResult, blockedBy: Decision | null) => void;
  /** Called for every block (the decisions log attaches here). */
  onBlocked?: (block: BlockEvent) => void;
  /** Called when a client connection closes, with the bytes it sent and received. */
  onClosed?: (listener: ProxyListener, bytesFromClient: number, bytesToClient: number) => void;
}

/** A block on `listener`: logged, counted, and handed to onBlocked. */
export function reportBlocked(options: ProxyEvents & { logger: Logger }, listener: ProxyListener, client: string, decision: Decision, name: string | null): void {
  options.logger.info({ app: decision.app, layer: decision.layer, rule: decision.rule, name }, 'blocked');
  options.onResult?.(listener, 'blocked', decision);
  options.onBlocked?.({ layer: decision.layer, app: decision.app, rule: decision.rule, name, client });
}

export interface TlsProxyOptions extends ProxyEvents {
  dial: DialDeps;
  upstreamPort: number;
  blockAction: TlsBlockAction;
  clientHelloTimeoutMs: number;
  clientHelloMaxBytes: number;
  idleTimeoutMs: number;
  logger: Logger;
}

/**
 * Reads a ClientHello from `socket` (all segments, all records, within the deadline and the
 * cap), without consuming anything it cannot hand on: the bytes read are returned to be
 * replayed upstream unchanged. Resolves with the hello and those bytes, or a reason.
 */
export function readHello(socket: Socket, options: { timeoutMs: number; maxBytes: number }, initial?: Buffer): Promise<{ info: ClientHelloInfo; bytes: Buffer } | { failure: 'invalid' | 'no-sni' | 'timeout' | 'too-large' | 'closed'; reason: string; bytes: Buffer }> {
  return new Promise((resolve) => {
    let buffered = initial ?? Buffer.alloc(0);
    const finish = (result: Awaited<ReturnType<typeof readHello>>): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      resolve(result);
    };
    const check = (): void => {
      const result = readClientHello(buffered, options.maxBytes);
      if (result.kind === 'need-more') {
        if (buffered.length >= options.maxBytes) finish({ failure: 'too-large', reason: 'too-large', bytes: buffered });
        return;
      }
      if (result.kind === 'found') finish({ info: { sni: result.sni, alpn: result.alpn, hasEch: result.hasEch }, bytes: buffered });
      else if (result.kind === 'no-name') finish({ failure: 'no-sni', reason: 'no-sni', bytes: buffered });
      else finish({ failure: result.reason === 'too-large' ? 'too-large' : 'invalid', reason: result.reason, bytes: buffered });
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      check();
    };
    const onEnd = (): void => finish({ failure: 'closed', reason: 'closed', bytes: buffered });
    const timer = setTimeout(() => finish({ failure: 'timeout', reason: 'timeout', bytes: buffered }), options.timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
    if (buffered.length > 0) check();
  });
}

/**
 * Explicit TLS proxy, as sniproxy: read the ClientHello, decide on its SNI, resolve and decide
 * on the addresses, dial, replay the hello bytes, splice. Read, decide and act stay apart:
 * client-hello.ts reads, policy.decide decides, this function acts.
 */
export async function handleTlsConnection(socket: Socket, options: TlsProxyOptions, done: () => void): Promise<void> {
  const log = options.logger;
  const report = options.onResult ?? (() => undefined);
  const hello = await readHello(socket, { timeoutMs: options.clientHelloTimeoutMs, maxBytes: options.clientHelloMaxBytes });
  if ('failure' in hello) {
    if (hello.failure !== 'closed') {
      report('tls', hello.failure === 'no-sni' ? 'no-sni' : hello.failure, null);
      log.debug({ reason: hello.reason }, 'client hello refused');
      abortTls(socket, options.blockAction);
    } else socket.destroy();
    done();
    return;
  }
  const { sni } = hello.info;
  const decision = options.dial.policy.decide({ name: sni, port: options.upstreamPort, layer: 'tls' });
  if (decision.verdict === 'block') {
    reportBlocked(options, 'tls', socket.remoteAddress ?? '', decision, sni);
    abortTls(socket, options.blockAction);
    done();
    return;
  }
  const outcome = await dialDestination(sni, options.upstreamPort, 'tls', options.dial, new DownstreamForwarder(socket));
  if (outcome.kind !== 'connected') {
    if (outcome.kind === 'blocked') {
      reportBlocked(options, 'tls', socket.remoteAddress ?? '', outcome.decision, sni);
    } else {
      log.info({ name: sni, outcome: outcome.kind, reason: 'reason' in outcome ? outcome.reason : undefined }, 'not forwarded');
      report('tls', outcome.kind === 'failed' ? 'dial-failed' : outcome.kind, null);
    }
    abortTls(socket, options.blockAction);
    done();
    return;
  }
  const upstream = outcome.socket;
  if (socket.destroyed) {
    // The client went away while the upstream was dialled: nobody to splice it with.
    upstream.destroy();
    done();
    return;
  }
  upstream.write(hello.bytes);
  report('tls', 'forwarded', null);
  splice(socket, upstream, options.idleTimeoutMs, done, true);
  socket.resume();
}
