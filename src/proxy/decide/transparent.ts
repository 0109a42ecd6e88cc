import type { Socket } from 'node:net';
import { unmapIpv4 } from '../../match/ip.js';
import type { DecisionQuery } from '../../policy/index.js';
import type { Endpoint } from '../../util/native-addon.js';
import { dialAddress } from '../act/dial.js';
import { DownstreamForwarder } from '../act/forward.js';
import type { Connection } from '../connection.js';
import type { ProxyContext } from '../context.js';
import { sniffFirstBytes } from '../inspect/first-bytes.js';
import { readHello } from '../inspect/hello-reader.js';
import { refuse, tlsAction, type Outcome } from '../outcome.js';
import { HttpStream } from './http.js';
import { dialRefusal, helloRefusal, sniQuery } from './tls.js';

export interface TransparentTcpOptions {
  /** Where the client was connecting to before nftables sent it here; null when it was not redirected. */
  originalDestination: (socket: Socket) => Endpoint | null;
  /** The listener's own address: a connection "to" it came straight at us and has no destination. */
  isOwnAddress: (destination: Endpoint) => boolean;
  firstDataTimeoutMs: number;
}

/**
 * One intercepted TCP connection. The original destination (address and port) is judged
 * first, before a byte is read: the IP layer (KakaoTalk LOCO's ports on Kakao ranges, LINE's
 * networks) answers with a reset. Then the client's first bytes tell what it speaks: TLS is
 * judged on its SNI together with the address, HTTP on every request's Host (the inspected
 * stream with a fixed destination), KakaoTalk's LOCO on its protocol (a reset while KakaoTalk is
 * blocked), anything else — or a client that waits for the server to speak first — goes on to
 * the destination on the address decision alone. The destination is
 * always the one the client chose, never re-resolved from a name it sent.
 */
export async function inspectTransparent(connection: Connection, ctx: ProxyContext, options: TransparentTcpOptions): Promise<Outcome> {
  const { limits } = ctx;
  const found = options.originalDestination(connection.client);
  // Not redirected: someone connected to the listener itself. Dialling "our own" address would
  // loop back into this listener.
  if (found === null || options.isOwnAddress(found)) return refuse('not-intercepted', 'close');
  const destination: Endpoint = { address: unmapIpv4(found.address), port: found.port };
  const addressQuery: DecisionQuery = { ip: destination.address, port: destination.port, proto: 'tcp', layer: 'ip', client: connection.clientAddress };
  const addressDecision = ctx.policy.decide(addressQuery);
  // Nothing was said yet, so no protocol-level refusal fits: a reset, as a firewall's reject.
  if (addressDecision.verdict === 'block') return refuse('blocked', 'reset', { decision: addressDecision, name: null });

  const first = await sniffFirstBytes(connection.reader, {
    firstData: connection.deadline(options.firstDataTimeoutMs),
    classify: () => connection.deadline(limits.clientHelloTimeoutMs),
  });
  if (first === 'closed') return refuse(null, 'close');
  if (first === 'incomplete') return refuse('timeout', 'reset');
  if (first === 'http') {
    return { kind: 'stream', stream: new HttpStream(connection, ctx, { upstreamPort: destination.port, fixed: { destination, judged: addressQuery } }) };
  }
  const judged = [addressQuery];
  if (first === 'loco') {
    // KakaoTalk's own protocol, wherever it goes: an address the catalog does not know yet
    // (handed out by LOCO booking) is blocked all the same.
    const query: DecisionQuery = { ...addressQuery, protocol: 'loco', layer: 'protocol' };
    const decision = ctx.policy.decide(query);
    if (decision.verdict === 'block') return refuse('blocked', 'reset', { decision, name: null });
    judged.push(query);
  }
  let name: string | null = null;
  if (first === 'tls') {
    const hello = await readHello(connection.reader, { maxBytes: limits.clientHelloMaxBytes, signal: connection.deadline(limits.clientHelloTimeoutMs) });
    if ('failure' in hello) {
      // A hello without a name is let through on the address decision (the client chose an
      // address, not a name); one that is malformed, late or oversized is refused as in the
      // explicit proxy, since an evasion attempt looks exactly like that.
      if (hello.failure !== 'no-sni') return helloRefusal(hello, ctx);
    } else {
      name = hello.info.sni;
      const query = sniQuery(name, destination.address, destination.port, connection.clientAddress);
      const decision = ctx.policy.decide(query);
      if (decision.verdict === 'block') return refuse('blocked', tlsAction(ctx.blockAction), { decision, name });
      judged.push(query);
    }
  }
  const forwarder = new DownstreamForwarder(connection.client);
  const dialed = await dialAddress(destination.address, destination.port, ctx.dial, connection, addressQuery, forwarder);
  if (dialed.kind !== 'connected') return dialRefusal(dialed, name, 'reset', ctx);
  return { kind: 'tunnel', upstream: dialed.socket, forwarder, judged, result: 'forwarded' };
}
