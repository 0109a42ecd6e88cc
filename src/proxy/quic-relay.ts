import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import type { ClientAcl } from '../match/client-acl.js';
import { unmapIpv4 } from '../match/ip.js';
import type { DecisionQuery } from '../policy/index.js';
import type { Endpoint, TransparentUdpSocket, nativeBinding } from '../util/native-addon.js';
import type { ConnectionTable, TrackedConnection } from './connection-table.js';
import type { ProxyContext } from './context.js';
import type { ProxyResult } from './events.js';
import { readClientHelloMessage } from './inspect/client-hello.js';
import { CryptoStream, readInitialPacket } from './inspect/quic-initial.js';
import { OwnAddresses } from './own-address.js';

export interface QuicRelayOptions {
  binding: NonNullable<ReturnType<typeof nativeBinding>>;
  listen: Endpoint;
  idleTimeoutMs: number;
  maxFlows: number;
  pendingDatagrams: number;
  pendingBytes: number;
  /** proxy.allowClients: datagrams from anyone else are dropped unread. */
  acl: ClientAcl;
}

type FlowState =
  /** Collecting Initial packets until the ClientHello is whole. */
  | { kind: 'pending'; dcid: Buffer | null; crypto: CryptoStream; held: Buffer[]; heldBytes: number }
  /** Refused: its datagrams are dropped until it goes quiet (the client falls back to TCP). */
  | { kind: 'dropped' }
  /** Relayed both ways: `reply` is bound to the destination's address and port and connected to the client, so answers look like the server's. */
  | { kind: 'relayed'; upstream: UdpSocket; reply: TransparentUdpSocket };

/** One QUIC flow (client address and port, original destination), tracked in the same table as TCP connections. */
class Flow implements TrackedConnection {
  readonly listener = 'quic' as const;
  readonly startedMs = performance.now();
  lastSeenMs = this.startedMs;
  fromClient = 0;
  toClient = 0;
  judged: DecisionQuery[] = [];

  constructor(
    readonly key: string,
    readonly client: Endpoint,
    readonly destination: Endpoint,
    public state: FlowState,
    private readonly relay: { drop(flow: Flow): void; end(flow: Flow): void },
  ) {}

  get clientAddress(): string {
    return this.client.address;
  }

  cut(): void {
    this.relay.drop(this);
  }

  close(): void {
    this.relay.end(this);
  }
}

/** Held bytes across all pending flows stay under this many flows' worth. */
const PENDING_BUDGET_FLOWS = 1024;

/**
 * QUIC in transparent mode: UDP 443 handed over by an nftables TPROXY rule. A new flow
 * (client address and port, original destination) is held until its Initial packets yield
 * the ClientHello — decrypted with the Initial keys, CRYPTO frames put back in order across
 * packets — and decided on its SNI together with the destination. Blocked (or unreadable)
 * flows are dropped, so the client falls back to TCP where the TLS layer decides; allowed
 * ones are relayed both ways until idle. Nothing is decrypted after the first flight. A policy
 * change that blocks a relayed flow drops it from then on.
 *
 * Flows take their client's slot in the proxy's ConnectionTable like TCP connections, and give
 * it back when they end (idle, or the relay closing).
 */
export class QuicRelay {
  private readonly flows = new Map<string, Flow>();
  private listener: TransparentUdpSocket | null = null;
  private bound: Endpoint | null = null;
  private readonly ownAddresses = new OwnAddresses();
  private sweeper: NodeJS.Timeout | null = null;
  private heldBytesTotal = 0;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly table: ConnectionTable,
    private readonly options: QuicRelayOptions,
  ) {}

  listen(): Endpoint {
    const { binding, listen } = this.options;
    this.listener = new binding.UdpSocket(listen.address, listen.port, (data, source, destination) => this.onListenerDatagram(data, source, destination));
    const sweepEveryMs = Math.max(100, Math.min(this.options.idleTimeoutMs, this.ctx.limits.clientHelloTimeoutMs) / 4);
    this.sweeper = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweeper.unref();
    this.bound = this.listener.address();
    return this.bound;
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
    if (!this.options.acl.allows(client.address)) {
      this.ctx.report.result('quic', 'client-refused');
      return;
    }
    const destination = { address: unmapIpv4(found.address), port: found.port };
    const key = `${client.address}|${client.port}|${destination.address}|${destination.port}`;
    const flow = this.flows.get(key) ?? this.open(key, client, destination);
    if (flow !== null) this.fromClient(flow, data);
  }

  private open(key: string, client: Endpoint, destination: Endpoint): Flow | null {
    const { report, policy } = this.ctx;
    const flow = new Flow(key, client, destination, { kind: 'dropped' }, this);
    if (this.flows.size >= this.options.maxFlows || !this.table.open(flow)) {
      report.result('quic', 'limited');
      return null;
    }
    this.flows.set(key, flow);
    const addressQuery: DecisionQuery = { ip: destination.address, port: destination.port, proto: 'udp', layer: 'ip', client: client.address };
    const decision = policy.decide(addressQuery);
    if (decision.verdict === 'block') {
      report.blocked('quic', client.address, decision, null);
      return flow;
    }
    flow.judged = [addressQuery];
    flow.state = { kind: 'pending', dcid: null, crypto: new CryptoStream(this.ctx.limits.clientHelloMaxBytes), held: [], heldBytes: 0 };
    return flow;
  }

  private fromClient(flow: Flow, data: Buffer): void {
    flow.lastSeenMs = performance.now();
    flow.fromClient += data.length;
    if (flow.state.kind === 'relayed') flow.state.upstream.send(data, flow.destination.port, flow.destination.address);
    else if (flow.state.kind === 'pending') this.hold(flow, flow.state, data);
  }

  private hold(flow: Flow, pending: Extract<FlowState, { kind: 'pending' }>, data: Buffer): void {
    const { pendingDatagrams, pendingBytes } = this.options;
    const maxBytes = this.ctx.limits.clientHelloMaxBytes;
    if (pending.held.length >= pendingDatagrams || pending.heldBytes + data.length > pendingBytes || this.heldBytesTotal + data.length > pendingBytes * PENDING_BUDGET_FLOWS) {
      this.refuse(flow, 'too-large');
      return;
    }
    pending.held.push(data);
    pending.heldBytes += data.length;
    this.heldBytesTotal += data.length;
    // 0-RTT or a reordered later packet may come first; it is held and sent on with the rest.
    const initial = readInitialPacket(data);
    if (initial.kind !== 'initial') return;
    // Every Initial of a connection carries the destination connection ID of the first one.
    pending.dcid ??= initial.dcid;
    if (!pending.dcid.equals(initial.dcid)) return;
    if (!pending.crypto.add(initial.crypto)) {
      this.refuse(flow, 'too-large');
      return;
    }
    const hello = readClientHelloMessage(pending.crypto.contiguous(), maxBytes);
    if (hello.kind === 'need-more') return;
    if (hello.kind === 'invalid') {
      this.refuse(flow, hello.reason === 'too-large' ? 'too-large' : 'invalid');
      return;
    }
    const name = hello.kind === 'found' ? hello.sni : null;
    const query: DecisionQuery = { name, ip: flow.destination.address, port: flow.destination.port, proto: 'udp', layer: 'quic', client: flow.client.address };
    const decision = this.ctx.policy.decide(query);
    if (decision.verdict === 'block') {
      this.ctx.report.blocked('quic', flow.client.address, decision, name);
      this.drop(flow);
      return;
    }
    flow.judged.push(query);
    this.relay(flow, pending);
  }

  private relay(flow: Flow, pending: Extract<FlowState, { kind: 'pending' }>): void {
    const { destination, client } = flow;
    const { report } = this.ctx;
    const verdict = this.ctx.dial.guard.check(destination.address);
    if (!verdict.isAllowed) {
      report.logger.info({ address: destination.address, reason: verdict.reason }, 'quic flow not forwarded');
      this.refuse(flow, 'forbidden');
      return;
    }
    let reply: TransparentUdpSocket;
    try {
      reply = new this.options.binding.UdpSocket(destination.address, destination.port, (data) => {
        if (this.flows.get(flow.key) === flow) this.fromClient(flow, data);
      });
      reply.connect(client.address, client.port);
    } catch (e: unknown) {
      report.logger.warn({ err: e instanceof Error ? e.message : String(e) }, 'quic reply socket failed');
      this.refuse(flow, 'dial-failed');
      return;
    }
    const upstream = createSocket(isIP(destination.address) === 6 ? 'udp6' : 'udp4');
    this.releaseHeld(pending);
    flow.state = { kind: 'relayed', upstream, reply };
    upstream.on('error', () => this.end(flow));
    // Unconnected, so sends queue in order while it binds; answers from anyone else are ignored.
    upstream.on('message', (data, from) => {
      if (from.port !== destination.port || unmapIpv4(from.address) !== destination.address) return;
      flow.lastSeenMs = performance.now();
      flow.toClient += data.length;
      reply.send(data, client.address, client.port);
    });
    for (const datagram of pending.held) upstream.send(datagram, destination.port, destination.address);
    report.result('quic', 'forwarded');
  }

  private refuse(flow: Flow, result: ProxyResult): void {
    this.ctx.report.result('quic', result);
    this.drop(flow);
  }

  /** From now on the flow's datagrams are dropped; it stays known (and holds its slot) until it goes quiet. */
  drop(flow: Flow): void {
    this.closeSockets(flow);
    flow.state = { kind: 'dropped' };
    flow.judged = [];
  }

  private closeSockets(flow: Flow): void {
    const { state } = flow;
    if (state.kind === 'pending') this.releaseHeld(state);
    if (state.kind === 'relayed') {
      state.upstream.close();
      state.reply.close();
    }
  }

  private releaseHeld(pending: Extract<FlowState, { kind: 'pending' }>): void {
    this.heldBytesTotal -= pending.heldBytes;
    pending.heldBytes = 0;
  }

  end(flow: Flow): void {
    if (this.flows.get(flow.key) !== flow) return;
    this.flows.delete(flow.key);
    this.closeSockets(flow);
    flow.state = { kind: 'dropped' };
    this.table.close(flow, flow.fromClient, flow.toClient);
  }

  /** Ends idle flows, and pending ones whose ClientHello did not come whole in time. */
  private sweep(): void {
    const now = performance.now();
    for (const flow of [...this.flows.values()]) {
      if (flow.state.kind === 'pending' && now - flow.startedMs > this.ctx.limits.clientHelloTimeoutMs) {
        this.refuse(flow, 'timeout');
        continue;
      }
      if (now - flow.lastSeenMs > this.options.idleTimeoutMs) this.end(flow);
    }
  }
}
