import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import type { PolicyView } from '../../dns/index.js';
import { unmapIpv4 } from '../../match/ip.js';
import type { Logger } from '../../observability/logger.js';
import { ClientSlots } from '../client-slots.js';
import { OwnAddresses } from './own-address.js';
import type { DialGuard } from '../dial-guard.js';
import { CryptoStream, readInitialPacket } from '../quic/initial.js';
import { readClientHelloMessage } from '../tls/client-hello.js';
import { reportBlocked, type ProxyEvents, type ProxyResult } from '../tls-proxy.js';
import type { Endpoint, TransparentUdpSocket, nativeBinding } from '../../util/native-addon.js';

export interface QuicRelayOptions extends ProxyEvents {
  binding: NonNullable<ReturnType<typeof nativeBinding>>;
  listen: Endpoint;
  policy: PolicyView;
  guard: DialGuard;
  idleTimeoutMs: number;
  /** How long a flow may take to show its whole ClientHello. */
  helloTimeoutMs: number;
  clientHelloMaxBytes: number;
  maxFlows: number;
  maxFlowsPerClient: number;
  pendingDatagrams: number;
  pendingBytes: number;
  logger: Logger;
}

interface FlowBase {
  key: string;
  client: Endpoint;
  destination: Endpoint;
  startedMs: number;
  lastSeenMs: number;
  fromClient: number;
  toClient: number;
}

/** Collecting Initial packets until the ClientHello is whole. */
interface PendingFlow extends FlowBase {
  state: 'pending';
  dcid: Buffer | null;
  crypto: CryptoStream;
  held: Buffer[];
  heldBytes: number;
}

/** Refused: its datagrams are dropped until it goes quiet (the client falls back to TCP). */
interface DroppedFlow extends FlowBase {
  state: 'dropped';
}

interface RelayedFlow extends FlowBase {
  state: 'relayed';
  upstream: UdpSocket;
  /** Bound to the destination's address and port, connected to the client: answers look like the server's. */
  reply: TransparentUdpSocket;
}

type Flow = PendingFlow | DroppedFlow | RelayedFlow;

/**
 * QUIC in transparent mode: UDP 443 handed over by an nftables TPROXY rule. A new flow
 * (client address and port, original destination) is held until its Initial packets yield
 * the ClientHello — decrypted with the Initial keys, CRYPTO frames put back in order across
 * packets — and decided on its SNI together with the destination. Blocked (or unreadable)
 * flows are dropped, so the client falls back to TCP where the TLS layer decides; allowed
 * ones are relayed both ways until idle. Nothing is decrypted after the first flight.
 */
export class QuicRelay {
  private readonly flows = new Map<string, Flow>();
  private readonly slots: ClientSlots;
  private readonly options: QuicRelayOptions;
  private listener: TransparentUdpSocket | null = null;
  private bound: Endpoint | null = null;
  private readonly ownAddresses = new OwnAddresses();
  private sweeper: NodeJS.Timeout | null = null;
  private heldBytesTotal = 0;

  constructor(options: QuicRelayOptions) {
    this.options = options;
    this.slots = new ClientSlots(options.maxFlowsPerClient);
  }

  listen(): Endpoint {
    const { binding, listen } = this.options;
    this.listener = new binding.UdpSocket(listen.address, listen.port, (data, source, destination) => this.onListenerDatagram(data, source, destination));
    const sweepEveryMs = Math.max(100, Math.min(this.options.idleTimeoutMs, this.options.helloTimeoutMs) / 4);
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
    this.bound = this.listener.address();
    return this.bound;
  }

  /** Flows known now (held, dropped or relayed). */
  get activeFlows(): number {
    return this.flows.size;
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.listener?.close();
    this.listener = null;
    for (const flow of [...this.flows.values()]) this.end(flow);
  }

  private onListenerDatagram(data: Buffer, source: Endpoint, found: Endpoint | null): void {
    // Sent to the listener itself (no original destination, or its own address): relaying it
    // would loop back into the listener.
    if (found === null || this.bound === null || this.ownAddresses.isListener(found, this.bound)) return;
    const client = { address: unmapIpv4(source.address), port: source.port };
    const destination = { address: unmapIpv4(found.address), port: found.port };
    const key = `${client.address}|${client.port}|${destination.address}|${destination.port}`;
    const flow = this.flows.get(key) ?? this.open(key, client, destination);
    if (flow !== null) this.fromClient(flow, data);
  }

  private open(key: string, client: Endpoint, destination: Endpoint): Flow | null {
    const report = this.options.onResult ?? (() => undefined);
    if (this.flows.size >= this.options.maxFlows || !this.slots.take(client.address)) {
      report('quic', 'limited', null);
      return null;
    }
    const now = performance.now();
    const base: FlowBase = { key, client, destination, startedMs: now, lastSeenMs: now, fromClient: 0, toClient: 0 };
    const decision = this.options.policy.decide({ ip: destination.address, port: destination.port, proto: 'udp', layer: 'ip' });
    let flow: Flow;
    if (decision.verdict === 'block') {
      reportBlocked(this.options, 'quic', client.address, decision, null);
      flow = { ...base, state: 'dropped' };
    } else {
      flow = { ...base, state: 'pending', dcid: null, crypto: new CryptoStream(this.options.clientHelloMaxBytes), held: [], heldBytes: 0 };
    }
    this.flows.set(key, flow);
    return flow;
  }

  private fromClient(flow: Flow, data: Buffer): void {
    flow.lastSeenMs = performance.now();
    flow.fromClient += data.length;
    if (flow.state === 'relayed') flow.upstream.send(data, flow.destination.port, flow.destination.address);
    else if (flow.state === 'pending') this.hold(flow, data);
  }

  private hold(flow: PendingFlow, data: Buffer): void {
    const { pendingDatagrams, pendingBytes } = this.options;
    if (flow.held.length >= pendingDatagrams || flow.heldBytes + data.length > pendingBytes || this.heldBytesTotal + data.length > pendingBytes * PENDING_BUDGET_FLOWS) {
      this.refuse(flow, 'too-large');
      return;
    }
    flow.held.push(data);
    flow.heldBytes += data.length;
    this.heldBytesTotal += data.length;
    // 0-RTT or a reordered later packet may come first; it is held and sent on with the rest.
    const initial = readInitialPacket(data);
    if (initial.kind !== 'initial') return;
    // Every Initial of a connection carries the destination connection ID of the first one.
    flow.dcid ??= initial.dcid;
    if (!flow.dcid.equals(initial.dcid)) return;
    if (!flow.crypto.add(initial.crypto)) {
      this.refuse(flow, 'too-large');
      return;
    }
    const hello = readClientHelloMessage(flow.crypto.contiguous(), this.options.clientHelloMaxBytes);
    if (hello.kind === 'need-more') return;
    if (hello.kind === 'invalid') {
      this.refuse(flow, hello.reason === 'too-large' ? 'too-large' : 'invalid');
      return;
    }
    const name = hello.kind === 'found' ? hello.sni : null;
    const decision = this.options.policy.decide({ name, ip: flow.destination.address, port: flow.destination.port, proto: 'udp', layer: 'quic' });
    if (decision.verdict === 'block') {
      reportBlocked(this.options, 'quic', flow.client.address, decision, name);
      this.drop(flow);
      return;
    }
    this.relay(flow);
  }

  private relay(flow: PendingFlow): void {
    const report = this.options.onResult ?? (() => undefined);
    const { destination, client } = flow;
    const verdict = this.options.guard.check(destination.address);
    if (!verdict.isAllowed) {
      this.options.logger.info({ address: destination.address, reason: verdict.reason }, 'quic flow not forwarded');
      this.refuse(flow, 'forbidden');
      return;
    }
    let reply: TransparentUdpSocket;
    try {
      reply = new this.options.binding.UdpSocket(destination.address, destination.port, (data) => {
        const current = this.flows.get(flow.key);
        if (current !== undefined) this.fromClient(current, data);
      });
      reply.connect(client.address, client.port);
    } catch (e: unknown) {
      this.options.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'quic reply socket failed');
      this.refuse(flow, 'dial-failed');
      return;
    }
    const upstream = createSocket(isIP(destination.address) === 6 ? 'udp6' : 'udp4');
    const relayed: RelayedFlow = { ...flow, state: 'relayed', upstream, reply };
    this.releaseHeld(flow);
    this.flows.set(flow.key, relayed);
    upstream.on('error', () => this.end(relayed));
    // Unconnected, so sends queue in order while it binds; answers from anyone else are ignored.
    upstream.on('message', (data, from) => {
      if (from.port !== destination.port || unmapIpv4(from.address) !== destination.address) return;
      relayed.lastSeenMs = performance.now();
      relayed.toClient += data.length;
      reply.send(data, client.address, client.port);
    });
    for (const datagram of flow.held) upstream.send(datagram, destination.port, destination.address);
    report('quic', 'forwarded', null);
  }

  private refuse(flow: PendingFlow, result: ProxyResult): void {
    this.options.onResult?.('quic', result, null);
    this.drop(flow);
  }

  private drop(flow: PendingFlow): void {
    this.releaseHeld(flow);
    this.flows.set(flow.key, { key: flow.key, client: flow.client, destination: flow.destination, startedMs: flow.startedMs, lastSeenMs: flow.lastSeenMs, fromClient: flow.fromClient, toClient: flow.toClient, state: 'dropped' });
  }

  private releaseHeld(flow: PendingFlow): void {
    this.heldBytesTotal -= flow.heldBytes;
    flow.heldBytes = 0;
  }

  private end(flow: Flow): void {
    if (this.flows.get(flow.key) !== flow) return;
    this.flows.delete(flow.key);
    this.slots.release(flow.client.address);
    if (flow.state === 'pending') this.releaseHeld(flow);
    if (flow.state === 'relayed') {
      flow.upstream.close();
      flow.reply.close();
    }
    this.options.onClosed?.('quic', flow.fromClient, flow.toClient);
  }

  /** Ends idle flows, and pending ones whose ClientHello did not come whole in time. */
  private sweep(): void {
    const now = performance.now();
    for (const flow of [...this.flows.values()]) {
      if (flow.state === 'pending' && now - flow.startedMs > this.options.helloTimeoutMs) {
        this.refuse(flow, 'timeout');
        continue;
      }
      if (now - flow.lastSeenMs > this.options.idleTimeoutMs) this.end(flow);
    }
  }
}

/** Held bytes across all pending flows stay under this many flows' worth. */
const PENDING_BUDGET_FLOWS = 1024;
