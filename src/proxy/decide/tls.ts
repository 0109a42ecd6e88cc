import type { DecisionQuery } from '../../policy/index.js';
import { dialDestination, type DialOutcome } from '../act/dial.js';
import { DownstreamForwarder } from '../act/forward.js';
import type { Connection } from '../connection.js';
import type { ProxyContext } from '../context.js';
import { readHello, type HelloRead } from '../inspect/hello-reader.js';
import { refuse, tlsAction, type Outcome, type Refuse, type RefuseAction } from '../outcome.js';

/**
 * Explicit TLS listener, as sniproxy: the ClientHello's SNI names the destination. Decided on
 * the name, then on each address it resolves to; allowed: a tunnel to the first address, with
 * the hello replayed unchanged.
 */
export async function inspectTls(connection: Connection, ctx: ProxyContext, upstreamPort: number): Promise<Outcome> {
  const hello = await readHello(connection.reader, { maxBytes: ctx.limits.clientHelloMaxBytes, signal: connection.deadline(ctx.limits.clientHelloTimeoutMs) });
  if ('failure' in hello) return helloRefusal(hello, ctx);
  const { sni } = hello.info;
  const decision = ctx.policy.decide({ name: sni, port: upstreamPort, layer: 'tls', client: connection.clientAddress });
  if (decision.verdict === 'block') return refuse('blocked', tlsAction(ctx.blockAction), { decision, name: sni });
  const forwarder = new DownstreamForwarder(connection.client);
  const dialed = await dialDestination(sni, upstreamPort, 'tls', ctx.dial, connection, forwarder);
  if (dialed.kind !== 'connected') return dialRefusal(dialed, sni, tlsAction(ctx.blockAction), ctx);
  return { kind: 'tunnel', upstream: dialed.socket, forwarder, judged: [dialed.judged], result: 'forwarded' };
}

/** A hello that could not be read: refused the configured TLS way, or just closed when the client left. */
export function helloRefusal(hello: Extract<HelloRead, { failure: unknown }>, ctx: ProxyContext): Refuse {
  if (hello.failure === 'closed') return refuse(null, 'close');
  ctx.report.logger.debug({ reason: hello.reason }, 'client hello refused');
  return refuse(hello.failure, tlsAction(ctx.blockAction));
}

/** A dial that did not connect, as a refusal with `action` (a TLS alert or reset, an HTTP status page). */
export function dialRefusal(dialed: Exclude<DialOutcome, { kind: 'connected' }>, name: string | null, action: RefuseAction, ctx: ProxyContext): Refuse {
  if (dialed.kind === 'blocked') return refuse('blocked', action, { decision: dialed.decision, name });
  if (dialed.kind === 'abandoned') return refuse(null, 'close');
  ctx.report.logger.info({ name, outcome: dialed.kind, reason: dialed.reason }, 'not forwarded');
  return refuse(dialed.kind === 'failed' ? 'dial-failed' : dialed.kind, action);
}

/** The SNI inside a tunnel whose destination is already chosen (CONNECT, intercepted TLS), decided with that address. */
export function sniQuery(sni: string, address: string, port: number, client: string): DecisionQuery {
  return { name: sni, ip: address, port, proto: 'tcp', layer: 'tls', client };
}
