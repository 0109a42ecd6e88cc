import { isIP, type Socket } from 'node:net';
import type { AddressResolver } from '../dns/index.js';
import type { PolicyView } from '../dns/index.js';
import { errorMessage } from '../errors.js';
import type { Decision, Layer } from '../policy/index.js';
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

export type DialOutcome =
  | { kind: 'connected'; socket: Socket; address: string }
  | { kind: 'blocked'; decision: Decision }
  | { kind: 'forbidden'; address: string; reason: string }
  | { kind: 'unresolved'; reason: string }
  | { kind: 'failed'; address: string; reason: string };

/**
 * Turns a destination name into a connected socket, deciding on the way: the name's addresses
 * (proxy.hosts first, then the resolver's upstream path) are judged by the policy — an address
 * inside a blocked app's range blocks the connection even when the name is allowed — and by
 * the dial guard, on the very address that is then dialled, so a name that resolves to a
 * private address cannot be used to reach inside the network.
 */
export async function dialDestination(name: string, port: number, layer: Layer, deps: DialDeps, downstream?: DownstreamForwarder): Promise<DialOutcome> {
  let addresses: string[];
  if (isIP(name) !== 0) addresses = [name];
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
  for (const address of addresses) {
    const decision = deps.policy.decide({ name: isIP(name) === 0 ? name : null, ip: address, port, proto: 'tcp', layer });
    if (decision.verdict === 'block') return { kind: 'blocked', decision };
  }
  return dialAddress(addresses[0]!, port, deps, downstream);
}

/**
 * Connects to one address the policy has already judged; the dial guard still has the last
 * word (the transparent listener dials clients' original destinations through here too).
 */
export async function dialAddress(address: string, port: number, deps: Pick<DialDeps, 'guard' | 'connectTimeoutMs'>, downstream?: DownstreamForwarder): Promise<Exclude<DialOutcome, { kind: 'blocked' | 'unresolved' }>> {
  const verdict = deps.guard.check(address);
  if (!verdict.isAllowed) return { kind: 'forbidden', address, reason: verdict.reason };
  try {
    const socket = await connectGuarded({ host: address, port, guard: deps.guard, timeoutMs: deps.connectTimeoutMs, onread: downstream?.onread });
    downstream?.bind(socket);
    return { kind: 'connected', socket, address };
  } catch (e: unknown) {
    return { kind: 'failed', address, reason: errorMessage(e) };
  }
}

/**
 * Joins two sockets both ways with backpressure (pipe, or the DownstreamForwarder the upstream
 * was dialled with), half-close (a FIN from one side ends the other's writes) and error
 * propagation (an error on either destroys both). Both sides share one idle timeout.
 */
export function splice(client: Socket, upstream: Socket, idleTimeoutMs: number, onClose: () => void, isDownstreamForwarded = false): void {
  let isClosed = false;
  const close = (): void => {
    if (isClosed) return;
    isClosed = true;
    client.destroy();
    upstream.destroy();
    onClose();
  };
  for (const socket of [client, upstream]) {
    socket.setTimeout(idleTimeoutMs, close);
    socket.on('error', close);
    socket.on('close', () => {
      // The other side may still be flushing a half-closed stream; end it rather than cut it.
      const other = socket === client ? upstream : client;
      if (!other.destroyed && !other.writableEnded) other.end();
      if (client.destroyed && upstream.destroyed) close();
    });
  }
  client.pipe(upstream);
  if (isDownstreamForwarded) upstream.on('end', () => client.end());
  else upstream.pipe(client);
}
