import { isIP, type Socket } from 'node:net';
import type { AddressResolver, PolicyView } from '../../dns/index.js';
import { errorMessage } from '../../errors.js';
import type { Decision, DecisionQuery, Layer } from '../../policy/index.js';
import { connectGuarded, type DialGuard } from './dial-guard.js';
import type { DownstreamForwarder } from './forward.js';

export interface DialDeps {
  policy: PolicyView;
  resolver: AddressResolver;
  /** proxy.hosts: normalised name -> IP, consulted before DNS. */
  hosts: Readonly<Record<string, string>>;
  guard: DialGuard;
  connectTimeoutMs: number;
}

/** The connection a dial is for: it takes the upstream socket over the moment it connects. */
export interface DialOwner {
  readonly clientAddress: string;
  /** False (and the socket destroyed) when the connection ended while the dial was under way. */
  adopt(socket: Socket): boolean;
}

export type DialOutcome =
  | { kind: 'connected'; socket: Socket; address: string; judged: DecisionQuery }
  | { kind: 'blocked'; decision: Decision }
  | { kind: 'forbidden'; address: string; reason: string }
  | { kind: 'unresolved'; reason: string }
  | { kind: 'failed'; address: string; reason: string }
  /** The client went away while the upstream was dialled. */
  | { kind: 'abandoned' };

/**
 * Turns a destination name into a connected socket, deciding on the way: the name's addresses
 * (proxy.hosts first, then the resolver: the DNS answer cache and upstreams) are judged by the
 * policy — an address inside a blocked app's range blocks the connection even when the name is
 * allowed — and by the dial guard, on the very address that is then dialled, so a name that
 * resolves to a private address cannot be used to reach inside the network. The decision on
 * the dialled address is returned as `judged`: what the connection was allowed on.
 */
export async function dialDestination(name: string, port: number, layer: Layer, deps: DialDeps, owner: DialOwner, downstream?: DownstreamForwarder): Promise<DialOutcome> {
  const isName = isIP(name) === 0;
  let addresses: string[];
  if (!isName) addresses = [name];
  else {
    const pinned = deps.hosts[name];
    if (pinned !== undefined) addresses = [pinned];
    else {
      try {
        addresses = await deps.resolver.resolve(name);
      } catch (e: unknown) {
        return { kind: 'unresolved', reason: errorMessage(e) };
      }
    }
  }
  if (addresses.length === 0) return { kind: 'unresolved', reason: 'no addresses' };
  const queries = addresses.map((address): DecisionQuery => ({ name: isName ? name : null, ip: address, port, proto: 'tcp', layer, client: owner.clientAddress }));
  for (const query of queries) {
    const decision = deps.policy.decide(query);
    if (decision.verdict === 'block') return { kind: 'blocked', decision };
  }
  return dialAddress(addresses[0]!, port, deps, owner, queries[0]!, downstream);
}

/**
 * Connects to one address the policy has already judged (`judged`, what the connection is then
 * allowed on); the dial guard still has the last word (the transparent listener dials clients'
 * original destinations through here too).
 */
export async function dialAddress(
  address: string,
  port: number,
  deps: Pick<DialDeps, 'guard' | 'connectTimeoutMs'>,
  owner: DialOwner,
  judged: DecisionQuery,
  downstream?: DownstreamForwarder,
): Promise<Exclude<DialOutcome, { kind: 'blocked' | 'unresolved' }>> {
  const verdict = deps.guard.check(address);
  if (!verdict.isAllowed) return { kind: 'forbidden', address, reason: verdict.reason };
  let socket: Socket;
  try {
    socket = await connectGuarded({ host: address, port, guard: deps.guard, timeoutMs: deps.connectTimeoutMs, onread: downstream?.onread });
  } catch (e: unknown) {
    return { kind: 'failed', address, reason: errorMessage(e) };
  }
  // connectGuarded's contract: an error listener before anything else is awaited; adopt adds it.
  if (!owner.adopt(socket)) return { kind: 'abandoned' };
  downstream?.bind(socket);
  return { kind: 'connected', socket, address, judged };
}
