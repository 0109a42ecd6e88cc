import type { Socket } from 'node:net';
import { unmapIpv4 } from '../../match/ip.js';
import type { Logger } from '../../observability/logger.js';
import { abortTls, type TlsBlockAction } from '../actions.js';
import { dialAddress, splice, type DialDeps } from '../dial.js';
import { DownstreamForwarder } from '../forward.js';
import { handleHttpConnection } from '../http-proxy.js';
import { readHello, reportBlocked, type ProxyEvents } from '../tls-proxy.js';
import { sniffFirstBytes } from './first-bytes.js';
import type { Endpoint } from '../../util/native-addon.js';

export interface TransparentTcpOptions extends ProxyEvents {
  dial: DialDeps;
  /** Where the client was connecting to before nftables sent it here; null when it was not redirected. */
  originalDestination: (socket: Socket) => Endpoint | null;
  /** The listener's own address: a connection "to" it came straight at us and has no destination. */
  isOwnAddress: (destination: Endpoint) => boolean;
  blockAction: TlsBlockAction;
  firstDataTimeoutMs: number;
  clientHelloTimeoutMs: number;
  clientHelloMaxBytes: number;
  maxHeadBytes: number;
  idleTimeoutMs: number;
  logger: Logger;
}

/**
 * One intercepted TCP connection. The original destination (address and port) is judged
 * first, before a byte is read: the IP layer (KakaoTalk LOCO's ports on Kakao ranges, LINE's
 * networks) answers with a reset. Then the client's first bytes tell what it speaks: TLS is
 * judged on its SNI together with the address, HTTP on every request's Host (the HTTP proxy
 * with a fixed destination), anything else — or a client that waits for the server to speak
 * first — goes on to the destination on the address decision alone. The destination is
 * always the one the client chose, never re-resolved from a name it sent.
 */
export async function handleTransparentConnection(socket: Socket, options: TransparentTcpOptions, done: () => void): Promise<void> {
  const log = options.logger;
  const report = options.onResult ?? (() => undefined);
  const client = unmapIpv4(socket.remoteAddress ?? '');
  const found = options.originalDestination(socket);
  if (found === null || options.isOwnAddress(found)) {
    // Not redirected: someone connected to the listener itself. Dialling "our own" address
    // would loop back into this listener.
    report('transparent', 'not-intercepted', null);
    socket.destroy();
    done();
    return;
  }
  const destination: Endpoint = { address: unmapIpv4(found.address), port: found.port };
  const addressDecision = options.dial.policy.decide({ ip: destination.address, port: destination.port, proto: 'tcp', layer: 'ip' });
  if (addressDecision.verdict === 'block') {
    reportBlocked(options, 'transparent', client, addressDecision, null);
    // Nothing was said yet, so no protocol-level refusal fits: a reset, as a firewall's reject.
    socket.resetAndDestroy();
    done();
    return;
  }

  const first = await sniffFirstBytes(socket, { firstDataMs: options.firstDataTimeoutMs, classifyMs: options.clientHelloTimeoutMs });
  if (first.kind === 'closed') {
    socket.destroy();
    done();
    return;
  }
  if (first.kind === 'incomplete') {
    report('transparent', 'timeout', null);
    socket.resetAndDestroy();
    done();
    return;
  }
  if (first.kind === 'http') {
    await handleHttpConnection(
      socket,
      {
        dial: options.dial,
        upstreamPort: destination.port,
        blockAction: options.blockAction,
        headTimeoutMs: options.clientHelloTimeoutMs,
        maxHeadBytes: options.maxHeadBytes,
        clientHelloMaxBytes: options.clientHelloMaxBytes,
        idleTimeoutMs: options.idleTimeoutMs,
        logger: log,
        onResult: options.onResult,
        onBlocked: options.onBlocked,
        destination,
        listener: 'transparent',
      },
      done,
    );
    return;
  }
  let name: string | null = null;
  if (first.kind === 'tls') {
    const hello = await readHello(socket, { timeoutMs: options.clientHelloTimeoutMs, maxBytes: options.clientHelloMaxBytes });
    if ('failure' in hello) {
      if (hello.failure === 'closed') {
        socket.destroy();
        done();
        return;
      }
      // A hello without a name is let through on the address decision (the client chose an
      // address, not a name); one that is malformed, late or oversized is refused as in the
      // explicit proxy, since an evasion attempt looks exactly like that.
      if (hello.failure !== 'no-sni') {
        report('transparent', hello.failure, null);
        log.debug({ reason: hello.reason }, 'client hello refused');
        abortTls(socket, options.blockAction);
        done();
        return;
      }
      socket.unshift(hello.bytes);
    } else {
      name = hello.info.sni;
      const decision = options.dial.policy.decide({ name, ip: destination.address, port: destination.port, proto: 'tcp', layer: 'tls' });
      if (decision.verdict === 'block') {
        reportBlocked(options, 'transparent', client, decision, name);
        abortTls(socket, options.blockAction);
        done();
        return;
      }
      // readHello read the hello off the socket; it goes upstream first.
      socket.unshift(hello.bytes);
    }
  }

  const outcome = await dialAddress(destination.address, destination.port, options.dial, new DownstreamForwarder(socket));
  if (outcome.kind !== 'connected') {
    log.info({ name, address: destination.address, port: destination.port, outcome: outcome.kind, reason: outcome.reason }, 'not forwarded');
    report('transparent', outcome.kind === 'failed' ? 'dial-failed' : outcome.kind, null);
    socket.resetAndDestroy();
    done();
    return;
  }
  if (socket.destroyed) {
    outcome.socket.destroy();
    done();
    return;
  }
  report('transparent', 'forwarded', null);
  splice(socket, outcome.socket, options.idleTimeoutMs, done, true);
  socket.resume();
}
