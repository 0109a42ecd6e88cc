import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { BlockList, connect, isIP, type Socket as TcpSocket } from 'node:net';
import { DEFAULTS } from '../config/defaults.js';
import { parseUpstreamAddress } from '../config/upstream-address.js';
import { PortcullisError, errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { UpstreamAnswer, UpstreamErrorKind, UpstreamHealth, UpstreamQuestion, UpstreamResolver } from './upstream-types.js';
import type { ChannelOutcome, ChannelSettings, UpstreamChannel } from './upstream-channel.js';
import { DohChannel } from './upstream-doh.js';
import { DotChannel } from './upstream-dot.js';

/** Why a query failed: an upstream outcome, or the pool refusing it (full, or closed). */
export type UpstreamFailureKind = UpstreamErrorKind | 'overloaded' | 'closed';

/** One upstream outcome, for metrics: `upstream` is a configured label, `outcome` a closed set. */
export interface UpstreamResult {
  upstream: string;
  outcome: 'ok' | UpstreamErrorKind;
  rttMs: number | null;
}

export interface UpstreamPoolOptions {
  logger: Logger;
  /** One UDP attempt; then the question goes to another upstream. */
  timeoutMs?: number;
  /** All attempts together; then the query rejects. */
  deadlineMs?: number;
  /** Called once per attempt outcome and per dropped reply ('mismatch', 'malformed'). */
  onResult?: (r: UpstreamResult) => void;
  /** PEM CA certificates trusted for DoT/DoH upstreams beside the built-in roots (dns.upstreamCa). */
  ca?: string | null;
}

/** The one factory for PCL_ERR_UPSTREAM_FAILED. `upstream` is null when no upstream was involved. */
export function upstreamFailed(upstream: string | null, kind: UpstreamFailureKind, message: string, cause?: unknown): PortcullisError {
  return new PortcullisError('PCL_ERR_UPSTREAM_FAILED', message, { cause, details: { upstream, kind } });
}

const HEADER_BYTES = 12;
/** Root name (1) + type (2) + class (2) + TTL (4) + RDLENGTH (2). */
const OPT_RR_BYTES = 11;
const TYPE_OPT = 41;
/** EDNS option code of Padding (RFC 7830). */
const OPTION_PADDING = 12;
const OPTION_HEADER_BYTES = 4;
const FLAG_QR = 0x80;
const MASK_OPCODE = 0x78;
const FLAG_TC = 0x02;
const FLAG_RD = 0x01;
/** In the second flags byte. */
const FLAG_CD = 0x10;
/** In the OPT TTL's flags half. */
const FLAG_DO = 0x8000;
const NAME_MAX_WIRE_BYTES = 255;
const LABEL_MAX_BYTES = 63;
/** A fresh sender-chosen ID is drawn at most this often before the attempt gives up (socket full). */
const ID_DRAWS = 32;
/** Weight of a new RTT sample in the smoothed RTT (EWMA), as in TCP's SRTT. */
const RTT_SAMPLE_WEIGHT = 0.25;
/** One choice in this many goes to a random healthy upstream, so a slower one is still measured. */
const EXPLORE_ONE_IN = 16;
/** Random bytes fetched from the CSPRNG at a time (IDs, 0x20 bits, choices). */
const RANDOM_POOL_BYTES = 4_096;

/** IDs, 0x20 case bits and choices come from node:crypto, a few KiB at a time. */
class RandomSource {
  private pool = randomBytes(RANDOM_POOL_BYTES);
  private pos = 0;

  byte(): number {
    if (this.pos >= this.pool.length) {
      this.pool = randomBytes(RANDOM_POOL_BYTES);
      this.pos = 0;
    }
    return this.pool[this.pos++]!;
  }

  u16(): number {
    return (this.byte() << 8) | this.byte();
  }

  /** Uniform in [0, n) for 1 <= n <= 65536. */
  below(n: number): number {
    if (n <= 1) return 0;
    const limit = 65_536 - (65_536 % n);
    for (;;) {
      const r = this.u16();
      if (r < limit) return r % n;
    }
  }
}

interface Upstream {
  /** As configured: a bounded label for logs and metrics. */
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly type: 'udp4' | 'udp6';
  readonly protocol: UpstreamAnswer['transport'];
  /** DoT or DoH: the encrypted connection every attempt goes over; null for plain DNS (UDP slots). */
  readonly channel: UpstreamChannel | null;
  /** Matches the upstream's address in any spelling (fallback when the text differs). */
  readonly address: BlockList;
  readonly slots: UdpSlot[];
  srttMs: number | null;
  consecutiveFailures: number;
  hasProbeInFlight: boolean;
}

/** One long-lived UDP socket (created on first use, replaced after an error) and its IDs in flight. */
interface UdpSlot {
  readonly upstream: Upstream;
  socket: UdpSocket | null;
  readonly pending: Map<number, Attempt>;
}

interface Waiter {
  resolve: (answer: UpstreamAnswer) => void;
  reject: (err: PortcullisError) => void;
}

/** One question on its way upstream, shared by every caller asking it meanwhile. */
interface Exchange {
  readonly key: string;
  readonly question: UpstreamQuestion;
  readonly deadlineAt: number;
  readonly waiters: Waiter[];
  /** Every attempt so far (bounded: upstreamMaxAttempts primaries, one probe). */
  readonly attempts: Attempt[];
  /** The attempt the retry logic waits on; null between attempts or when none is left. */
  primary: Attempt | null;
  primaryCount: number;
  deadlineTimer: NodeJS.Timeout | null;
  lastFailure: { upstream: string; kind: UpstreamErrorKind } | null;
  isDone: boolean;
}

/**
 * One query to one upstream. 'udp': waiting for a reply; 'tcp': retrying over TCP after TC=1;
 * 'channel': sent over a DoT/DoH channel; 'failed': given up on (a timed-out UDP or channel
 * attempt stays out, so a late reply is still accepted while the exchange goes on elsewhere).
 */
interface Attempt {
  readonly exchange: Exchange;
  readonly upstream: Upstream;
  readonly isProbe: boolean;
  holdsProbe: boolean;
  state: 'udp' | 'tcp' | 'channel' | 'failed';
  slot: UdpSlot | null;
  id: number;
  /** The query exactly as sent, 0x20 case included: replies are checked against these bytes. */
  query: Buffer;
  nameLength: number;
  sentAt: number;
  timer: NodeJS.Timeout | null;
  connectTimer: NodeJS.Timeout | null;
  tcp: TcpSocket | null;
  /** Withdraws the query from its channel (the exchange is over). */
  cancel: (() => void) | null;
}

type ReplyVerdict = 'ok' | 'truncated' | 'mismatch' | 'malformed';

/**
 * Sends questions to the configured upstreams and returns the first valid response. Follows
 * CoreDNS `forward`: bounded in-flight exchanges, an upstream is down after
 * `upstreamMaxFails` consecutive failures, a down upstream gets at most one probe in flight
 * (sent alongside the real attempt), and when all are down a random one is tried anyway.
 * Replies are accepted only from the upstream's address and port, with an ID in flight on
 * that socket, QR=1 and the question exactly as sent (0x20 case included); anything else is
 * dropped and counted. TC=1 is retried over TCP to the same upstream.
 */
export class UpstreamPool implements UpstreamResolver {
  private readonly upstreams: Upstream[];
  private readonly log: Logger;
  private readonly onResult: ((r: UpstreamResult) => void) | undefined;
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;
  private readonly random = new RandomSource();
  private readonly inflight = new Map<string, Exchange>();
  /** Probes still out after their question was answered elsewhere: they only report health. */
  private readonly detachedProbes = new Set<Attempt>();
  private isClosed = false;
  private closing: Promise<void> | null = null;

  constructor(upstreams: readonly string[], options: UpstreamPoolOptions) {
    const problems: string[] = [];
    const timeoutMs = options.timeoutMs ?? DEFAULTS.upstreamTimeoutMs;
    const deadlineMs = options.deadlineMs ?? DEFAULTS.upstreamDeadlineMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) problems.push(`timeoutMs must be a positive number of ms, got ${timeoutMs}`);
    if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) problems.push(`deadlineMs must be a positive number of ms, got ${deadlineMs}`);
    if (upstreams.length === 0) problems.push('at least one upstream is needed');
    const parsed: Upstream[] = [];
    const channelSettings: ChannelSettings = { ca: options.ca ?? null, handshakeTimeoutMs: DEFAULTS.upstreamTlsHandshakeTimeoutMs, idleTimeoutMs: DEFAULTS.upstreamTlsIdleTimeoutMs };
    for (const text of upstreams) {
      const at = parseUpstreamAddress(text);
      if (typeof at === 'string') {
        problems.push(at);
        continue;
      }
      if (parsed.some((u) => u.label === text)) {
        problems.push(`"${text}": listed twice`);
        continue;
      }
      const family = isIP(at.host);
      const address = new BlockList();
      address.addAddress(at.host, family === 6 ? 'ipv6' : 'ipv4');
      const channel = at.protocol === 'tls' ? new DotChannel(at, channelSettings) : at.protocol === 'https' ? new DohChannel(at, channelSettings) : null;
      const upstream: Upstream = {
        label: text,
        host: at.host,
        port: at.port,
        type: family === 6 ? 'udp6' : 'udp4',
        protocol: at.protocol,
        channel,
        address,
        slots: [],
        srttMs: null,
        consecutiveFailures: 0,
        hasProbeInFlight: false,
      };
      if (channel === null) for (let i = 0; i < DEFAULTS.upstreamSocketsPerUpstream; i++) upstream.slots.push({ upstream, socket: null, pending: new Map() });
      parsed.push(upstream);
    }
    if (problems.length > 0) {
      throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `dns.upstreams: ${problems.join('; ')}`, { details: { problems } });
    }
    this.upstreams = parsed;
    this.timeoutMs = timeoutMs;
    this.deadlineMs = deadlineMs;
    this.onResult = options.onResult;
    this.log = options.logger.child({ component: 'upstream' });
    this.log.info({ upstreams: parsed.map((u) => u.label), timeoutMs, deadlineMs }, 'upstream pool ready');
  }

  query(question: UpstreamQuestion): Promise<UpstreamAnswer> {
    if (this.isClosed) return Promise.reject(upstreamFailed(null, 'closed', 'the upstream pool is closed'));
    const key = `${question.name}/${question.qtype}/${question.qclass}/${question.dnssecOk ? 1 : 0}${question.checkingDisabled ? 1 : 0}`;
    const shared = this.inflight.get(key);
    if (shared !== undefined) {
      if (shared.waiters.length >= DEFAULTS.dnsMaxWaitersPerQuestion) {
        return Promise.reject(upstreamFailed(null, 'overloaded', `more than ${DEFAULTS.dnsMaxWaitersPerQuestion} callers wait for one question`));
      }
      return new Promise((resolve, reject) => shared.waiters.push({ resolve, reject }));
    }
    if (this.inflight.size >= DEFAULTS.dnsMaxInflight) {
      return Promise.reject(upstreamFailed(null, 'overloaded', `more than ${DEFAULTS.dnsMaxInflight} upstream queries in flight`));
    }
    if (!isWireName(question.nameWire)) {
      return Promise.reject(upstreamFailed(null, 'malformed', 'the question name is not a valid wire-format name'));
    }
    const exchange: Exchange = {
      key,
      question,
      deadlineAt: performance.now() + this.deadlineMs,
      waiters: [],
      attempts: [],
      primary: null,
      primaryCount: 0,
      deadlineTimer: null,
      lastFailure: null,
      isDone: false,
    };
    const promise = new Promise<UpstreamAnswer>((resolve, reject) => exchange.waiters.push({ resolve, reject }));
    this.inflight.set(key, exchange);
    exchange.deadlineTimer = setTimeout(this.onDeadline, this.deadlineMs, exchange);
    this.startPrimary(exchange);
    if (!exchange.isDone) this.startProbe(exchange);
    return promise;
  }

  health(): UpstreamHealth[] {
    return this.upstreams.map((u) => ({
      upstream: u.label,
      healthy: !this.isDown(u),
      rttMs: u.srttMs === null ? null : Math.round(u.srttMs * 100) / 100,
      consecutiveFailures: u.consecutiveFailures,
    }));
  }

  /** Rejects every pending query (kind 'closed') and closes every socket. */
  close(): Promise<void> {
    this.isClosed = true;
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const exchange of [...this.inflight.values()]) {
      this.finish(exchange, upstreamFailed(exchange.primary?.upstream.label ?? null, 'closed', 'the upstream pool was closed'));
    }
    for (const probe of this.detachedProbes) this.releaseAttempt(probe);
    this.detachedProbes.clear();
    const closed: Promise<void>[] = [];
    for (const upstream of this.upstreams) {
      upstream.channel?.close();
      for (const slot of upstream.slots) {
        const socket = slot.socket;
        if (socket === null) continue;
        slot.socket = null;
        closed.push(closeUdp(socket));
      }
    }
    await Promise.all(closed);
  }

  private isDown(u: Upstream): boolean {
    return u.consecutiveFailures >= DEFAULTS.upstreamMaxFails;
  }

  // ---- choosing -------------------------------------------------------------------------

  /**
   * Starts the next primary attempt unless the attempts or the time are used up; then, with
   * nothing else in flight, the exchange fails with the last failure seen.
   */
  private startPrimary(exchange: Exchange): void {
    while (!exchange.isDone && exchange.primary === null) {
      const remainingMs = exchange.deadlineAt - performance.now();
      if (exchange.primaryCount >= DEFAULTS.upstreamMaxAttempts || remainingMs < 1) {
        if (!exchange.attempts.some((a) => a.state !== 'failed')) this.failExchange(exchange);
        return;
      }
      exchange.primaryCount++;
      this.startAttempt(exchange, this.choose(exchange), false, remainingMs);
    }
  }

  /** In-band health check: a down upstream not yet tried gets this question too, one probe at a time. */
  private startProbe(exchange: Exchange): void {
    let chosen: Upstream | null = null;
    let seen = 0;
    for (const u of this.upstreams) {
      if (!this.isDown(u) || u.hasProbeInFlight || isTried(exchange, u)) continue;
      seen++;
      if (this.random.below(seen) === 0) chosen = u; // reservoir: uniform among the candidates
    }
    if (chosen === null) return;
    const remainingMs = exchange.deadlineAt - performance.now();
    if (remainingMs >= 1) this.startAttempt(exchange, chosen, true, remainingMs);
  }

  /**
   * Healthy upstreams not yet tried for this question, else any healthy one, by smoothed RTT
   * plus a penalty per recent failure; one choice in EXPLORE_ONE_IN is random. An upstream
   * never measured counts as fastest, so each is tried early. All down: a random one.
   */
  private choose(exchange: Exchange): Upstream {
    let best: Upstream | null = null;
    let bestScore = Infinity;
    let ties = 0;
    let candidates = 0;
    const untriedOnly = this.upstreams.some((u) => !this.isDown(u) && !isTried(exchange, u));
    const isExploring = this.random.below(EXPLORE_ONE_IN) === 0;
    for (const u of this.upstreams) {
      if (this.isDown(u) || (untriedOnly && isTried(exchange, u))) continue;
      candidates++;
      if (isExploring) {
        if (this.random.below(candidates) === 0) best = u;
        continue;
      }
      const score = (u.srttMs ?? 0) + u.consecutiveFailures * this.timeoutMs;
      if (score < bestScore) {
        best = u;
        bestScore = score;
        ties = 1;
      } else if (score === bestScore && this.random.below(++ties) === 0) {
        best = u;
      }
    }
    if (best !== null) return best;
    // All down: forward's rule, try one at random rather than fail without trying.
    const fresh = this.upstreams.filter((u) => !isTried(exchange, u));
    const from = fresh.length > 0 ? fresh : this.upstreams;
    return from[this.random.below(from.length)]!;
  }

  // ---- UDP ------------------------------------------------------------------------------

  private startAttempt(exchange: Exchange, upstream: Upstream, isProbe: boolean, remainingMs: number): void {
    if (upstream.channel !== null) {
      this.startChannelAttempt(exchange, upstream, upstream.channel, isProbe, remainingMs);
      return;
    }
    const first = this.random.below(upstream.slots.length);
    let slot: UdpSlot | null = null;
    let id = -1;
    for (let i = 0; i < upstream.slots.length && id === -1; i++) {
      slot = upstream.slots[(first + i) % upstream.slots.length]!;
      id = this.freeId(slot);
    }
    const attempt = this.newAttempt(exchange, upstream, isProbe, 'udp', id === -1 ? 0 : id, 0);
    attempt.id = id;
    if (slot === null || id === -1) {
      this.failAttempt(attempt, 'network', 'no free query ID on any socket');
      return;
    }
    attempt.slot = slot;
    slot.pending.set(id, attempt);
    attempt.timer = setTimeout(this.onAttemptTimeout, Math.min(this.timeoutMs, remainingMs), attempt);
    try {
      this.socketFor(slot).send(attempt.query, upstream.port, upstream.host, (err) => {
        if (err !== null && attempt.state === 'udp') this.failAttempt(attempt, 'network', err);
      });
    } catch (e: unknown) {
      this.failAttempt(attempt, 'network', e);
    }
  }

  private newAttempt(exchange: Exchange, upstream: Upstream, isProbe: boolean, state: 'udp' | 'channel', id: number, padToBlock: number): Attempt {
    const { message, nameLength } = buildQuery(exchange.question, id, this.random, padToBlock);
    const attempt: Attempt = {
      exchange,
      upstream,
      isProbe,
      holdsProbe: isProbe,
      state,
      slot: null,
      id,
      query: message,
      nameLength,
      sentAt: performance.now(),
      timer: null,
      connectTimer: null,
      tcp: null,
      cancel: null,
    };
    exchange.attempts.push(attempt);
    if (isProbe) upstream.hasProbeInFlight = true;
    else exchange.primary = attempt;
    return attempt;
  }

  private freeId(slot: UdpSlot): number {
    for (let i = 0; i < ID_DRAWS; i++) {
      const id = this.random.u16();
      if (!slot.pending.has(id)) return id;
    }
    return -1;
  }

  private socketFor(slot: UdpSlot): UdpSocket {
    if (slot.socket !== null) return slot.socket;
    // Bound on first send to an OS-chosen port; unref'd: the pool never holds the process open.
    const socket = createSocket({ type: slot.upstream.type });
    socket.on('error', (err) => {
      this.onSocketError(slot, socket, err);
    });
    socket.on('message', (msg, rinfo) => {
      if (slot.socket === socket) this.onUdpMessage(slot, msg, rinfo);
    });
    socket.unref();
    slot.socket = socket;
    return socket;
  }

  /** Replaces the socket: the next attempt on this slot opens a new one; its attempts fail over. */
  private onSocketError(slot: UdpSlot, socket: UdpSocket, err: Error): void {
    if (slot.socket !== socket) return;
    this.log.warn({ upstream: slot.upstream.label, err: err.message }, 'upstream socket failed; replacing it');
    slot.socket = null;
    void closeUdp(socket);
    for (const attempt of [...slot.pending.values()]) {
      slot.pending.delete(attempt.id);
      attempt.slot = null;
      if (attempt.state === 'udp') this.failAttempt(attempt, 'network', err);
    }
  }

  private onUdpMessage(slot: UdpSlot, msg: Buffer, rinfo: RemoteInfo): void {
    const upstream = slot.upstream;
    if (rinfo.port !== upstream.port || !isSameAddress(upstream, rinfo.address)) {
      this.report(upstream, 'mismatch', null);
      return;
    }
    if (msg.length < HEADER_BYTES) {
      this.report(upstream, 'malformed', null);
      return;
    }
    const attempt = slot.pending.get(msg.readUInt16BE(0));
    if (attempt === undefined) {
      this.report(upstream, 'mismatch', null);
      return;
    }
    const verdict = checkReply(msg, attempt.query, attempt.nameLength, false);
    if (verdict === 'mismatch' || verdict === 'malformed') {
      this.report(upstream, verdict, null); // dropped: the attempt keeps waiting for the real one
      return;
    }
    const rttMs = performance.now() - attempt.sentAt;
    const wasLate = attempt.state === 'failed';
    slot.pending.delete(attempt.id);
    attempt.slot = null;
    this.clearTimers(attempt);
    this.recordSuccess(upstream, rttMs);
    if (attempt.exchange.isDone) {
      // A probe whose question was answered elsewhere: it has shown the upstream is back.
      this.report(upstream, verdict === 'truncated' ? 'truncated' : 'ok', rttMs);
      this.releaseAttempt(attempt);
      this.detachedProbes.delete(attempt);
      return;
    }
    if (verdict === 'truncated') {
      this.report(upstream, 'truncated', rttMs);
      this.startTcp(attempt);
      return;
    }
    if (!wasLate) this.report(upstream, 'ok', rttMs); // a late reply was already counted as a timeout
    this.finish(attempt.exchange, { message: msg, upstream: upstream.label, transport: 'udp' });
  }

  private readonly onAttemptTimeout = (attempt: Attempt): void => {
    attempt.timer = null;
    if (attempt.state === 'udp' || attempt.state === 'channel') this.failAttempt(attempt, 'timeout', null);
  };

  // ---- DoT and DoH ----------------------------------------------------------------------

  /** Padded (RFC 8467), sent over the channel, waited for as long as a UDP attempt. */
  private startChannelAttempt(exchange: Exchange, upstream: Upstream, channel: UpstreamChannel, isProbe: boolean, remainingMs: number): void {
    const attempt = this.newAttempt(exchange, upstream, isProbe, 'channel', this.random.u16(), DEFAULTS.upstreamPaddingBlockBytes);
    attempt.timer = setTimeout(this.onAttemptTimeout, Math.min(this.timeoutMs, remainingMs), attempt);
    attempt.cancel = channel.send(attempt.query, (outcome) => {
      this.onChannelOutcome(attempt, outcome);
    });
  }

  /** A reply is checked as a TCP one (ID as sent, question byte for byte), then taken like a UDP one. */
  private onChannelOutcome(attempt: Attempt, outcome: ChannelOutcome): void {
    attempt.cancel = null;
    const { upstream } = attempt;
    if (!('message' in outcome)) {
      if (attempt.state === 'channel') this.failAttempt(attempt, outcome.kind, outcome.cause);
      else this.releaseTimedOut(attempt);
      return;
    }
    const msg = outcome.message;
    const verdict = msg.readUInt16BE(0) === attempt.query.readUInt16BE(0) ? checkReply(msg, attempt.query, attempt.nameLength, true) : 'mismatch';
    if (verdict !== 'ok') {
      if (attempt.state === 'channel') this.failAttempt(attempt, verdict === 'truncated' ? 'malformed' : verdict, `answer: ${verdict}`);
      else this.releaseTimedOut(attempt);
      return;
    }
    const rttMs = performance.now() - attempt.sentAt;
    const wasLate = attempt.state === 'failed';
    this.clearTimers(attempt);
    this.recordSuccess(upstream, rttMs);
    if (attempt.exchange.isDone) {
      // A probe whose question was answered elsewhere: it has shown the upstream is back.
      this.report(upstream, 'ok', rttMs);
      this.releaseAttempt(attempt);
      this.detachedProbes.delete(attempt);
      return;
    }
    if (!wasLate) this.report(upstream, 'ok', rttMs); // a late reply was already counted as a timeout
    this.finish(attempt.exchange, { message: msg, upstream: upstream.label, transport: upstream.protocol });
  }

  /** A timed-out channel attempt that then failed too: nothing more to count; a detached probe is done. */
  private releaseTimedOut(attempt: Attempt): void {
    if (this.detachedProbes.delete(attempt)) this.releaseAttempt(attempt);
  }

  // ---- TCP after TC=1 -----------------------------------------------------------------

  private startTcp(attempt: Attempt): void {
    const { exchange, upstream } = attempt;
    const remainingMs = exchange.deadlineAt - performance.now();
    attempt.state = 'tcp';
    if (remainingMs < 1) {
      this.failAttempt(attempt, 'timeout', null);
      return;
    }
    // A fresh ID and fresh 0x20 case: the TCP answer is checked like a UDP one.
    attempt.id = this.random.u16();
    const { message, nameLength } = buildQuery(exchange.question, attempt.id, this.random);
    attempt.query = message;
    attempt.nameLength = nameLength;
    attempt.sentAt = performance.now();
    const frame = Buffer.allocUnsafe(2 + message.length);
    frame.writeUInt16BE(message.length, 0);
    message.copy(frame, 2);

    let socket: TcpSocket;
    try {
      socket = connect({ host: upstream.host, port: upstream.port, noDelay: true });
    } catch (e: unknown) {
      this.failAttempt(attempt, 'network', e);
      return;
    }
    attempt.tcp = socket;
    attempt.timer = setTimeout(this.onTcpTimeout, Math.min(DEFAULTS.upstreamTcpTimeoutMs, remainingMs), attempt);
    attempt.connectTimer = setTimeout(this.onTcpTimeout, Math.min(DEFAULTS.upstreamTcpConnectTimeoutMs, remainingMs), attempt);
    const chunks: Buffer[] = [];
    let received = 0;
    let length = -1;
    socket.on('error', (err) => {
      if (attempt.tcp === socket) this.failAttempt(attempt, 'network', err);
    });
    socket.on('close', () => {
      if (attempt.tcp === socket) this.failAttempt(attempt, 'network', 'connection closed before a whole answer');
    });
    socket.on('connect', () => {
      if (attempt.connectTimer !== null) clearTimeout(attempt.connectTimer);
      attempt.connectTimer = null;
      socket.write(frame);
    });
    socket.on('data', (chunk: Buffer) => {
      if (attempt.tcp !== socket) return;
      chunks.push(chunk);
      received += chunk.length;
      if (length === -1) {
        if (received < 2) return;
        length = (chunks[0]!.length >= 2 ? chunks[0]! : Buffer.concat(chunks, received)).readUInt16BE(0);
        if (length < HEADER_BYTES || length > DEFAULTS.upstreamTcpMaxMessageBytes) {
          this.failAttempt(attempt, 'malformed', `TCP answer of ${length} bytes`);
          return;
        }
      }
      // Chunks are joined once, when the whole answer is in: at most one read past the cap.
      if (received < 2 + length) return;
      this.onTcpAnswer(attempt, Buffer.concat(chunks, 2 + length).subarray(2));
    });
  }

  private onTcpAnswer(attempt: Attempt, msg: Buffer): void {
    const upstream = attempt.upstream;
    const rttMs = performance.now() - attempt.sentAt;
    const verdict = msg.readUInt16BE(0) === attempt.id ? checkReply(msg, attempt.query, attempt.nameLength, true) : 'mismatch';
    if (verdict !== 'ok') {
      this.failAttempt(attempt, verdict === 'truncated' ? 'malformed' : verdict, `TCP answer: ${verdict}`);
      return;
    }
    this.releaseAttempt(attempt); // closes the connection: one question per connection
    this.report(upstream, 'ok', rttMs);
    this.finish(attempt.exchange, { message: msg, upstream: upstream.label, transport: 'tcp' });
  }

  private readonly onTcpTimeout = (attempt: Attempt): void => {
    if (attempt.state === 'tcp') this.failAttempt(attempt, 'timeout', 'TCP connect or exchange timed out');
  };

  // ---- outcomes -------------------------------------------------------------------------

  private failAttempt(attempt: Attempt, kind: UpstreamErrorKind, cause: unknown): void {
    const { exchange, upstream } = attempt;
    if (attempt.state === 'failed') return;
    const isDetached = this.detachedProbes.delete(attempt);
    if (exchange.isDone && !isDetached) return; // released with its exchange
    attempt.state = 'failed';
    this.clearTimers(attempt);
    if (attempt.tcp !== null) {
      const socket = attempt.tcp;
      attempt.tcp = null;
      socket.destroy();
    }
    // A timed-out UDP or channel query stays out: a late reply still wins while the exchange goes on.
    if (kind !== 'timeout' || isDetached) {
      if (attempt.slot !== null && attempt.slot.pending.get(attempt.id) === attempt) attempt.slot.pending.delete(attempt.id);
      attempt.slot = null;
      this.cancelChannel(attempt);
    }
    if (attempt.holdsProbe) {
      attempt.holdsProbe = false;
      upstream.hasProbeInFlight = false;
    }
    this.recordFailure(upstream, kind);
    this.report(upstream, kind, null);
    this.log.debug({ upstream: upstream.label, kind, probe: attempt.isProbe, err: cause === null ? undefined : errorMessage(cause) }, 'upstream attempt failed');
    if (isDetached) return;
    exchange.lastFailure = { upstream: upstream.label, kind };
    if (exchange.primary === attempt) {
      exchange.primary = null;
      this.startPrimary(exchange);
    } else if (exchange.primary === null && !exchange.attempts.some((a) => a.state !== 'failed')) {
      this.failExchange(exchange);
    }
  }

  private readonly onDeadline = (exchange: Exchange): void => {
    exchange.deadlineTimer = null;
    if (exchange.isDone) return;
    let label = exchange.lastFailure?.upstream ?? null;
    for (const attempt of exchange.attempts) {
      if (attempt.state === 'failed' || attempt.isProbe) continue; // a probe runs on, detached
      // Count the cut-short attempts as timeouts without starting new ones.
      attempt.state = 'failed';
      this.recordFailure(attempt.upstream, 'timeout');
      this.report(attempt.upstream, 'timeout', null);
      label = attempt.upstream.label;
    }
    this.finish(exchange, upstreamFailed(label, 'timeout', `no answer from the upstreams within ${this.deadlineMs} ms`));
  };

  private failExchange(exchange: Exchange): void {
    const last = exchange.lastFailure;
    const kind = last?.kind ?? 'timeout';
    this.finish(exchange, upstreamFailed(last?.upstream ?? null, kind, `no usable answer from the upstreams (last: ${last?.upstream ?? 'none'}, ${kind})`));
  }

  /** Settles every caller once: the first gets the received bytes, the others their own copy. */
  private finish(exchange: Exchange, outcome: UpstreamAnswer | PortcullisError): void {
    if (exchange.isDone) return;
    exchange.isDone = true;
    if (this.inflight.get(exchange.key) === exchange) this.inflight.delete(exchange.key);
    if (exchange.deadlineTimer !== null) clearTimeout(exchange.deadlineTimer);
    exchange.deadlineTimer = null;
    for (const attempt of exchange.attempts) {
      // A probe still waiting keeps its ID and timer: its reply or timeout is the health check.
      if (attempt.holdsProbe && (attempt.state === 'udp' || attempt.state === 'channel') && !this.isClosed) this.detachedProbes.add(attempt);
      else this.releaseAttempt(attempt);
    }
    if (outcome instanceof PortcullisError) {
      for (const waiter of exchange.waiters) waiter.reject(outcome);
      return;
    }
    exchange.waiters.forEach((waiter, i) => {
      waiter.resolve(i === 0 ? outcome : { ...outcome, message: Buffer.from(outcome.message) });
    });
  }

  private releaseAttempt(attempt: Attempt): void {
    this.clearTimers(attempt);
    this.cancelChannel(attempt);
    if (attempt.slot !== null) {
      if (attempt.slot.pending.get(attempt.id) === attempt) attempt.slot.pending.delete(attempt.id);
      attempt.slot = null;
    }
    if (attempt.tcp !== null) {
      const socket = attempt.tcp;
      attempt.tcp = null;
      socket.destroy();
    }
    if (attempt.holdsProbe) {
      attempt.holdsProbe = false;
      attempt.upstream.hasProbeInFlight = false;
    }
  }

  private cancelChannel(attempt: Attempt): void {
    const cancel = attempt.cancel;
    attempt.cancel = null;
    cancel?.();
  }

  private clearTimers(attempt: Attempt): void {
    if (attempt.timer !== null) clearTimeout(attempt.timer);
    if (attempt.connectTimer !== null) clearTimeout(attempt.connectTimer);
    attempt.timer = null;
    attempt.connectTimer = null;
  }

  private recordSuccess(upstream: Upstream, rttMs: number): void {
    if (this.isDown(upstream)) this.log.info({ upstream: upstream.label }, 'upstream answers again; marked up');
    upstream.consecutiveFailures = 0;
    upstream.srttMs = upstream.srttMs === null ? rttMs : upstream.srttMs + (rttMs - upstream.srttMs) * RTT_SAMPLE_WEIGHT;
  }

  private recordFailure(upstream: Upstream, kind: UpstreamErrorKind): void {
    upstream.consecutiveFailures++;
    if (upstream.consecutiveFailures === DEFAULTS.upstreamMaxFails) {
      this.log.warn({ upstream: upstream.label, kind, failures: upstream.consecutiveFailures }, 'upstream marked down');
    }
  }

  private report(upstream: Upstream, outcome: UpstreamResult['outcome'], rttMs: number | null): void {
    if (this.onResult === undefined) return;
    try {
      this.onResult({ upstream: upstream.label, outcome, rttMs });
    } catch (e: unknown) {
      this.log.error({ err: errorMessage(e) }, 'onResult callback threw');
    }
  }
}

function isTried(exchange: Exchange, upstream: Upstream): boolean {
  return exchange.attempts.some((a) => a.upstream === upstream);
}

function isSameAddress(upstream: Upstream, address: string): boolean {
  if (address === upstream.host) return true;
  try {
    return upstream.address.check(address, upstream.type === 'udp6' ? 'ipv6' : 'ipv4');
  } catch {
    return false; // not an address of that family
  }
}

function closeUdp(socket: UdpSocket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => {
        resolve();
      });
    } catch {
      resolve(); // already closed
    }
  });
}

/** Labels of 1-63 bytes, no compression, ending with the root label, 255 bytes at most. */
function isWireName(name: Buffer): boolean {
  if (name.length === 0 || name.length > NAME_MAX_WIRE_BYTES) return false;
  let pos = 0;
  for (;;) {
    const length = name[pos];
    if (length === undefined || length > LABEL_MAX_BYTES) return false;
    if (length === 0) return pos === name.length - 1;
    pos += 1 + length;
  }
}

/**
 * Header (RD=1, CD per question), the question with each ASCII letter's case chosen at random
 * (DNS 0x20), and an OPT RR (UDP size, DO per question). Length bytes are at most 63, below
 * every letter, so only letters change. `padToBlock` > 0: a Padding option makes the message
 * a multiple of that many bytes (RFC 8467), so its length does not give the name away.
 */
function buildQuery(question: UpstreamQuestion, id: number, random: RandomSource, padToBlock = 0): { message: Buffer; nameLength: number } {
  const name = question.nameWire;
  const nameEnd = HEADER_BYTES + name.length;
  const unpadded = nameEnd + 4 + OPT_RR_BYTES;
  const padding = padToBlock === 0 ? -1 : Math.ceil((unpadded + OPTION_HEADER_BYTES) / padToBlock) * padToBlock - unpadded - OPTION_HEADER_BYTES;
  const message = padding === -1 ? Buffer.allocUnsafe(unpadded) : Buffer.alloc(unpadded + OPTION_HEADER_BYTES + padding);
  message.writeUInt16BE(id, 0);
  message[2] = FLAG_RD;
  message[3] = question.checkingDisabled ? FLAG_CD : 0;
  message.writeUInt16BE(1, 4); // QDCOUNT
  message.writeUInt16BE(0, 6);
  message.writeUInt16BE(0, 8);
  message.writeUInt16BE(1, 10); // ARCOUNT: the OPT RR
  name.copy(message, HEADER_BYTES);
  let bits = 0;
  let bitsLeft = 0;
  for (let i = HEADER_BYTES; i < nameEnd; i++) {
    const lower = message[i]! | 0x20;
    if (lower < 0x61 || lower > 0x7a) continue;
    if (bitsLeft === 0) {
      bits = random.byte();
      bitsLeft = 8;
    }
    message[i] = (bits & 1) === 1 ? lower & ~0x20 : lower;
    bits >>= 1;
    bitsLeft--;
  }
  let pos = nameEnd;
  pos = message.writeUInt16BE(question.qtype, pos);
  pos = message.writeUInt16BE(question.qclass, pos);
  message[pos++] = 0; // OPT owner: root
  pos = message.writeUInt16BE(TYPE_OPT, pos);
  pos = message.writeUInt16BE(DEFAULTS.upstreamEdnsUdpSize, pos);
  pos = message.writeUInt16BE(0, pos); // extended RCODE, version 0
  pos = message.writeUInt16BE(question.dnssecOk ? FLAG_DO : 0, pos);
  if (padding === -1) {
    message.writeUInt16BE(0, pos); // RDLENGTH
  } else {
    pos = message.writeUInt16BE(OPTION_HEADER_BYTES + padding, pos); // RDLENGTH
    pos = message.writeUInt16BE(OPTION_PADDING, pos);
    message.writeUInt16BE(padding, pos); // zero bytes follow (Buffer.alloc)
  }
  return { message, nameLength: name.length };
}

/**
 * Checks a reply against the query as sent: QR=1, same opcode, exactly one question equal
 * byte for byte (name with its 0x20 case, type, class); then, unless TC=1 over UDP, that every
 * record lies within the message. The ID has been matched by the caller.
 */
function checkReply(msg: Buffer, query: Buffer, nameLength: number, isTcp: boolean): ReplyVerdict {
  if (msg.length < HEADER_BYTES) return 'malformed';
  const flags = msg[2]!;
  if ((flags & FLAG_QR) === 0 || (flags & MASK_OPCODE) !== (query[2]! & MASK_OPCODE)) return 'mismatch';
  if (msg.readUInt16BE(4) !== 1) return 'mismatch';
  const questionEnd = HEADER_BYTES + nameLength + 4;
  if (msg.length < questionEnd) return 'malformed';
  if (msg.compare(query, HEADER_BYTES, questionEnd, HEADER_BYTES, questionEnd) !== 0) return 'mismatch';
  if (!isTcp && (flags & FLAG_TC) !== 0) return 'truncated';
  return isWellFormed(msg, questionEnd) ? 'ok' : 'malformed';
}

/** Every answer, authority and additional record fits in the message, names included. */
function isWellFormed(msg: Buffer, start: number): boolean {
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10);
  let pos = start;
  for (let i = 0; i < records; i++) {
    pos = skipName(msg, pos);
    if (pos === -1 || pos + 10 > msg.length) return false;
    pos += 10 + msg.readUInt16BE(pos + 8);
    if (pos > msg.length) return false;
  }
  return true;
}

/**
 * Returns the offset after the name at `start`, or -1. Pointers must point backwards into the
 * message past the header; with the 255-byte name limit that rules out loops.
 */
function skipName(msg: Buffer, start: number): number {
  let pos = start;
  let end = -1;
  let total = 0;
  for (;;) {
    if (pos >= msg.length) return -1;
    const length = msg[pos]!;
    if (length === 0) return end === -1 ? pos + 1 : end;
    const kind = length & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= msg.length) return -1;
      const target = ((length & 0x3f) << 8) | msg[pos + 1]!;
      if (target < HEADER_BYTES || target >= pos) return -1;
      if (end === -1) end = pos + 2;
      pos = target;
      continue;
    }
    if (kind !== 0) return -1;
    total += length + 1;
    if (total + 1 > NAME_MAX_WIRE_BYTES) return -1;
    pos += length + 1;
  }
}
