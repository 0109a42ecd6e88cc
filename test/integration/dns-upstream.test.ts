import { spawn } from 'node:child_process';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packet } from 'dns2';
import { afterEach, describe, expect, it } from 'vitest';
import { PortcullisError } from '../../src/errors.js';
import { UpstreamPool, type UpstreamPoolOptions, type UpstreamResult } from '../../src/dns/upstream.js';
import type { UpstreamAnswer, UpstreamQuestion } from '../../src/dns/upstream-types.js';
import { silentLogger } from '../../src/observability/logger.js';
import { rejection } from '../support/rejection.js';

// ---- DNS bytes, built and read by hand ----------------------------------------------------

function wireName(name: string): Buffer {
  const parts = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

function question(name: string, extra: Partial<UpstreamQuestion> = {}): UpstreamQuestion {
  return { nameWire: wireName(name), name, qtype: 1, qclass: 1, dnssecOk: false, checkingDisabled: false, ...extra };
}

interface SeenQuery {
  raw: Buffer;
  id: number;
  nameWire: Buffer;
  qtype: number;
  qclass: number;
  rinfo: RemoteInfo;
}

function parseQuery(raw: Buffer, rinfo: RemoteInfo): SeenQuery {
  let pos = 12;
  while (raw[pos] !== 0) pos += raw[pos]! + 1;
  return { raw, id: raw.readUInt16BE(0), nameWire: Buffer.from(raw.subarray(12, pos + 1)), qtype: raw.readUInt16BE(pos + 1), qclass: raw.readUInt16BE(pos + 3), rinfo };
}

interface ReplyOptions {
  id?: number;
  nameWire?: Buffer;
  qtype?: number;
  /** The 16-bit flags word; default QR RD RA, NOERROR. */
  flags?: number;
  answers?: string[];
  /** Overrides ANCOUNT (to announce records that are not there). */
  ancount?: number;
  /** Raw bytes after the question, instead of A records built from `answers`. */
  body?: Buffer;
}

function aRecord(address: string): Buffer {
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
  rr.writeUInt16BE(1, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(300, 6);
  rr.writeUInt16BE(4, 10);
  address.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
  return rr;
}

function reply(q: SeenQuery, o: ReplyOptions = {}): Buffer {
  const answers = o.answers ?? ['192.0.2.1'];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(o.id ?? q.id, 0);
  header.writeUInt16BE(o.flags ?? 0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(o.ancount ?? (o.body === undefined ? answers.length : 0), 6);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(o.qtype ?? q.qtype, 0);
  tail.writeUInt16BE(q.qclass, 2);
  return Buffer.concat([header, o.nameWire ?? q.nameWire, tail, o.body ?? Buffer.concat(answers.map(aRecord))]);
}

function addresses(message: Buffer): string[] {
  return Packet.parse(message).answers.map((a) => String(a.address));
}

function swapCase(name: Buffer): Buffer {
  return Buffer.from(name.map((b) => ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a ? b ^ 0x20 : b)));
}

// ---- fake upstreams on 127.0.0.1 ------------------------------------------------------------

type UdpHandler = (q: SeenQuery, fake: FakeUdp) => void;

interface FakeUdp {
  socket: UdpSocket;
  port: number;
  label: string;
  queries: SeenQuery[];
  /** null: a bound socket that never answers. */
  handler: UdpHandler | null;
  send: (bytes: Buffer, to: RemoteInfo) => void;
}

const answerDefault: UdpHandler = (q, fake) => {
  fake.send(reply(q), q.rinfo);
};

let sockets: UdpSocket[] = [];
let servers: Server[] = [];
let pools: UpstreamPool[] = [];

afterEach(async () => {
  await Promise.all(pools.map((p) => p.close()));
  pools = [];
  await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => {
    resolve();
  }))));
  sockets = [];
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => {
    resolve();
  }))));
  servers = [];
});

async function bindUdp(address = '127.0.0.1', port = 0): Promise<UdpSocket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  sockets.push(socket);
  return socket;
}

async function startUdp(handler: UdpHandler | null = answerDefault, wantedPort = 0): Promise<FakeUdp> {
  const socket = await bindUdp('127.0.0.1', wantedPort);
  const port = socket.address().port;
  const fake: FakeUdp = {
    socket,
    port,
    label: `127.0.0.1:${port}`,
    queries: [],
    handler,
    send: (bytes, to) => {
      socket.send(bytes, to.port, to.address);
    },
  };
  socket.on('message', (raw, rinfo) => {
    const q = parseQuery(raw, rinfo);
    fake.queries.push(q);
    fake.handler?.(q, fake);
  });
  return fake;
}

interface FakeTcp {
  queries: SeenQuery[];
  /** Resolves when the pool closes a connection. */
  closed: Promise<void>;
}

/**
 * A port free for TCP (probed by listening on 0) on which a UDP fake then binds, so that
 * startTcpBeside can take the same number; a random UDP port may be taken for TCP.
 */
async function startUdpForTcp(handler: UdpHandler): Promise<FakeUdp> {
  for (let attempt = 0; ; attempt++) {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    try {
      return await startUdp(handler, port);
    } catch (e: unknown) {
      if (attempt >= 10) throw e;
    }
  }
}

/** A DNS-over-TCP server on the same port as `udp`, answering each framed query with `answer`. */
async function startTcpBeside(udp: FakeUdp, answer: (q: SeenQuery, conn: TcpSocket) => void): Promise<FakeTcp> {
  let onClosed: () => void = () => undefined;
  const fake: FakeTcp = { queries: [], closed: new Promise((resolve) => (onClosed = resolve)) };
  const server = createServer((conn) => {
    let buffered = Buffer.alloc(0);
    conn.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
      const raw = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
      const q = parseQuery(Buffer.from(raw), { address: '127.0.0.1', family: 'IPv4', port: conn.remotePort ?? 0, size: raw.length });
      fake.queries.push(q);
      answer(q, conn);
    });
    conn.on('error', () => undefined);
    conn.on('end', () => {
      onClosed();
    });
    conn.on('close', () => {
      onClosed();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(udp.port, '127.0.0.1', () => {
      resolve();
    });
  });
  servers.push(server);
  return fake;
}

function frame(message: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(message.length, 0);
  return Buffer.concat([length, message]);
}

function makePool(upstreams: FakeUdp[], options: Partial<UpstreamPoolOptions> = {}): { pool: UpstreamPool; results: UpstreamResult[] } {
  const results: UpstreamResult[] = [];
  const pool = new UpstreamPool(upstreams.map((u) => u.label), {
    logger: silentLogger,
    onResult: (r) => {
      results.push(r);
    },
    ...options,
  });
  pools.push(pool);
  return { pool, results };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}


function outcomes(results: UpstreamResult[], outcome: UpstreamResult['outcome']): number {
  return results.filter((r) => r.outcome === outcome).length;
}

async function waitFor(check: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(5);
  }
}

// ---- tests ------------------------------------------------------------------------------

describe('UpstreamPool over UDP', () => {
  it('returns the upstream answer byte for byte, from the query it built (RD, CD, OPT 1232, DO)', async () => {
    const sent: Buffer[] = [];
    const up = await startUdp((q, fake) => {
      const bytes = reply(q, { answers: ['192.0.2.7', '192.0.2.8'] });
      sent.push(bytes);
      fake.send(bytes, q.rinfo);
    });
    const { pool, results } = makePool([up]);

    const answer = await pool.query(question('www.example.com', { dnssecOk: true, checkingDisabled: true }));
    expect(answer.upstream).toBe(up.label);
    expect(answer.transport).toBe('udp');
    expect(answer.message.equals(sent[0]!)).toBe(true);
    expect(addresses(answer.message)).toEqual(['192.0.2.7', '192.0.2.8']);

    const q = up.queries[0]!;
    const parsed = Packet.parse(q.raw);
    expect(parsed.questions[0]!.name.toLowerCase()).toBe('www.example.com');
    expect(parsed.header.rd).toBe(1);
    expect(q.raw[3]! & 0x10).toBe(0x10); // CD
    const optAt = 12 + q.nameWire.length + 4;
    expect(q.raw.length).toBe(optAt + 11);
    expect(q.raw.readUInt16BE(10)).toBe(1); // ARCOUNT
    expect(q.raw[optAt]).toBe(0);
    expect(q.raw.readUInt16BE(optAt + 1)).toBe(41);
    expect(q.raw.readUInt16BE(optAt + 3)).toBe(1232);
    expect(q.raw.readUInt16BE(optAt + 7) & 0x8000).toBe(0x8000); // DO

    await pool.query(question('www.example.org'));
    const plain = up.queries[1]!;
    expect(plain.raw[3]! & 0x10).toBe(0);
    expect(plain.raw.readUInt16BE(12 + plain.nameWire.length + 4 + 7) & 0x8000).toBe(0);

    expect(outcomes(results, 'ok')).toBe(2);
    expect(results[0]!.rttMs).toBeTypeOf('number');
    expect(pool.health()).toEqual([{ upstream: up.label, healthy: true, rttMs: expect.any(Number), consecutiveFailures: 0 }]);
  });

  it('0x20: randomises the case of every letter it sends and drops a reply that echoes another case', async () => {
    const up = await startUdp((q, fake) => {
      fake.send(reply(q, { nameWire: swapCase(q.nameWire), answers: ['198.51.100.66'] }), q.rinfo);
      fake.send(reply(q, { nameWire: Buffer.from(q.nameWire.toString('latin1').toLowerCase(), 'latin1'), answers: ['198.51.100.67'] }), q.rinfo);
      setTimeout(() => {
        fake.send(reply(q, { answers: ['192.0.2.1'] }), q.rinfo);
      }, 20);
    });
    const { pool, results } = makePool([up]);
    const name = 'abcdefghijklmnopqrstuvwxyz.example.com';
    const sentNames: string[] = [];
    for (let i = 0; i < 4; i++) {
      const answer = await pool.query(question(name, { qtype: 1 + i }));
      expect(addresses(answer.message)).toEqual(['192.0.2.1']);
      const sent = up.queries[i]!.nameWire;
      expect(sent.toString('latin1').toLowerCase()).toBe(wireName(name).toString('latin1'));
      expect(sent.toString('latin1')).toMatch(/[A-Z]/);
      expect(sent.toString('latin1')).toMatch(/[a-z]/);
      expect(answer.message.subarray(12, 12 + sent.length).equals(sent)).toBe(true);
      sentNames.push(sent.toString('latin1'));
    }
    expect(new Set(sentNames).size).toBeGreaterThan(1);
    expect(outcomes(results, 'mismatch')).toBe(8);
  });

  it('drops spoofed replies (other port, other address, wrong ID, wrong question, QR=0) and takes the real one', async () => {
    const otherPort = await bindUdp();
    const up = await startUdp(null);
    const otherAddress = await bindUdp('127.0.0.2', up.port);
    up.handler = (q, fake) => {
      const spoof = { answers: ['198.51.100.1'] };
      otherPort.send(reply(q, spoof), q.rinfo.port, q.rinfo.address);
      otherAddress.send(reply(q, spoof), q.rinfo.port, q.rinfo.address);
      fake.send(reply(q, { id: q.id ^ 0x5a5a, answers: ['198.51.100.2'] }), q.rinfo);
      fake.send(reply(q, { qtype: 28, answers: ['198.51.100.3'] }), q.rinfo);
      fake.send(reply(q, { nameWire: wireName('www.exbmple.com'), answers: ['198.51.100.4'] }), q.rinfo);
      fake.send(reply(q, { flags: 0x0180, answers: ['198.51.100.5'] }), q.rinfo);
      setTimeout(() => {
        fake.send(reply(q, { answers: ['192.0.2.1'] }), q.rinfo);
      }, 30);
    };
    const { pool, results } = makePool([up]);
    const answer = await pool.query(question('www.example.com'));
    expect(addresses(answer.message)).toEqual(['192.0.2.1']);
    expect(outcomes(results, 'mismatch')).toBe(6);
    expect(outcomes(results, 'ok')).toBe(1);
    // Only the first valid reply wins: a second copy afterwards is not in flight any more.
    const q = up.queries[0]!;
    up.send(reply(q, { answers: ['198.51.100.9'] }), q.rinfo);
    await waitFor(() => outcomes(results, 'mismatch') === 7, 1000);
  });

  it('drops malformed replies without crashing and takes the well-formed one', async () => {
    const up = await startUdp((q, fake) => {
      const header = reply(q).subarray(0, 12);
      fake.send(Buffer.from([1, 2, 3, 4, 5]), q.rinfo);
      fake.send(header, q.rinfo); // a header that promises a question it lacks
      fake.send(reply(q, { ancount: 3 }), q.rinfo); // three answers announced, one sent
      const loop = Buffer.from([0xc0, 0x00, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
      const at = 12 + q.nameWire.length + 4;
      loop.writeUInt16BE(0xc000 | at, 0); // a name that points at itself
      fake.send(reply(q, { body: loop, ancount: 1 }), q.rinfo);
      const long = aRecord('198.51.100.1');
      long.writeUInt16BE(400, 10); // RDLENGTH past the end
      fake.send(reply(q, { body: long, ancount: 1 }), q.rinfo);
      setTimeout(() => {
        fake.send(reply(q, { answers: ['192.0.2.1'] }), q.rinfo);
      }, 30);
    });
    const { pool, results } = makePool([up]);
    const answer = await pool.query(question('www.example.com'));
    expect(addresses(answer.message)).toEqual(['192.0.2.1']);
    expect(outcomes(results, 'malformed')).toBe(5);
    expect(pool.health()[0]!.healthy).toBe(true);
  });

  it('shares one upstream exchange among identical questions in flight, each caller with its own bytes', async () => {
    const up = await startUdp((q, fake) => {
      setTimeout(() => {
        fake.send(reply(q), q.rinfo);
      }, 50);
    });
    const { pool } = makePool([up]);
    const answers = await Promise.all(Array.from({ length: 10 }, () => pool.query(question('www.example.com'))));
    expect(up.queries).toHaveLength(1);
    const first = Buffer.from(answers[0]!.message);
    for (const a of answers) expect(a.message.equals(first)).toBe(true);
    answers[0]!.message.writeUInt16BE(0xffff, 0); // a caller patching its ID touches no one else
    expect(answers[1]!.message.equals(first)).toBe(true);

    // DO and CD are part of the question: they do not share.
    await Promise.all([pool.query(question('www.example.com')), pool.query(question('www.example.com', { dnssecOk: true })), pool.query(question('www.example.com', { checkingDisabled: true }))]);
    expect(up.queries).toHaveLength(4);
  });

  it('retries on the second upstream when the first never answers, within about 1.2 s', async () => {
    const dead = await startUdp(null);
    const live = await startUdp();
    const { pool, results } = makePool([dead, live]);
    // A never-measured upstream counts as fastest, so the dead one is tried first within two queries.
    const seenByDead = (): number => dead.queries.length;
    for (let i = 0; i < 6 && seenByDead() === 0; i++) {
      const before = seenByDead();
      const started = performance.now();
      const answer = await pool.query(question(`q${i}.example.com`));
      const elapsed = performance.now() - started;
      expect(answer.upstream).toBe(live.label);
      expect(elapsed).toBeLessThan(1200);
      if (seenByDead() > before) expect(elapsed).toBeGreaterThanOrEqual(950);
    }
    expect(dead.queries.length).toBeGreaterThan(0);
    expect(results).toContainEqual({ upstream: dead.label, outcome: 'timeout', rttMs: null });
    const health = pool.health();
    expect(health[0]!.consecutiveFailures).toBeGreaterThan(0);
    expect(health[1]!.rttMs).not.toBeNull();
  });

  it('rejects with PCL_ERR_UPSTREAM_FAILED in under 2 s when every upstream is dead', async () => {
    const deadA = await startUdp(null);
    const deadB = await startUdp(null);
    const { pool } = makePool([deadA, deadB]);
    const started = performance.now();
    const err = await rejection(pool.query(question('www.example.com')));
    const elapsed = performance.now() - started;
    expect(err.code).toBe('PCL_ERR_UPSTREAM_FAILED');
    expect(err.details.kind).toBe('timeout');
    expect([deadA.label, deadB.label]).toContain(err.details.upstream);
    expect(elapsed).toBeGreaterThanOrEqual(1400); // the deadline, 1.5 s
    expect(elapsed).toBeLessThan(2000);
    expect(deadA.queries.length).toBeGreaterThan(0);
    expect(deadB.queries.length).toBeGreaterThan(0);
  });

  it('marks an upstream down after 3 failures, probes it once at a time, and brings it back when it answers', async () => {
    const a = await startUdp(null);
    const b = await startUdp(null);
    const { pool } = makePool([a, b], { timeoutMs: 50, deadlineMs: 400 });
    for (let i = 0; i < 6 && pool.health().some((h) => h.healthy); i++) {
      const err = await rejection(pool.query(question(`down${i}.example.com`)));
      expect(err.details.kind).toBe('timeout');
    }
    expect(pool.health().map((h) => h.healthy)).toEqual([false, false]);
    for (const h of pool.health()) expect(h.consecutiveFailures).toBeGreaterThanOrEqual(3);

    // All down: a random one is still tried (never fail without trying), and b comes back.
    b.handler = answerDefault;
    const answer = await pool.query(question('back.example.com'));
    expect(answer.upstream).toBe(b.label);
    await sleep(80); // any attempt on a times out
    expect(pool.health().map((h) => [h.healthy, h.consecutiveFailures === 0])).toEqual([
      [false, false],
      [true, true],
    ]);

    // a is down: twenty questions go to b, and a gets one probe, not twenty.
    const seenByA = a.queries.length;
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.query(question(`probe${i}.example.com`))));
    for (const x of answers) expect(x.upstream).toBe(b.label);
    expect(a.queries.length - seenByA).toBe(1);

    // a answers again: the next probe (even one slower than b) marks it up.
    a.handler = (q, fake) => {
      setTimeout(() => {
        fake.send(reply(q), q.rinfo);
      }, 10);
    };
    await sleep(80); // the probe in flight times out
    await pool.query(question('recover.example.com'));
    await waitFor(() => pool.health()[0]!.healthy, 1000);
    expect(pool.health()[0]!.consecutiveFailures).toBe(0);
  });

  it('refuses questions beyond dnsMaxInflight with kind overloaded, and close() rejects the pending ones', async () => {
    const silent = await startUdp(null);
    const { pool } = makePool([silent]);
    const pending = Array.from({ length: 10_000 }, (_, i) => pool.query(question(`n${i}.example.com`)));
    const settled = Promise.allSettled(pending);
    const over = await rejection(pool.query(question('one-more.example.com')));
    expect(over.code).toBe('PCL_ERR_UPSTREAM_FAILED');
    expect(over.details).toEqual({ upstream: null, kind: 'overloaded' });
    const shared = pool.query(question('n0.example.com')); // joins an exchange in flight: not refused
    await pool.close();
    const err = await rejection(shared);
    expect(err.details.kind).toBe('closed');
    const results = await settled;
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof PortcullisError && r.reason.details.kind === 'closed')).toBe(true);
    expect((await rejection(pool.query(question('after.example.com')))).details.kind).toBe('closed');
  });

  it('rejects invalid upstream addresses at construction', () => {
    for (const bad of [[], ['dns.example:53'], ['::1:53'], ['127.0.0.1:53', '127.0.0.1:53'], ['tls://dns.example:853#dns.example'], ['tls://127.0.0.1#not a name'], ['https://127.0.0.1/dns-query?dns={dns}'], ['quic://127.0.0.1']]) {
      expect(() => new UpstreamPool(bad, { logger: silentLogger }), JSON.stringify(bad)).toThrow(PortcullisError);
    }
    const good = ['127.0.0.1:53', '[::1]:53', '127.0.0.2', 'tls://127.0.0.1#dns.example', 'https://[::1]/dns-query#dns.example'];
    const ok = new UpstreamPool(good, { logger: silentLogger });
    pools.push(ok);
    expect(ok.health().map((h) => h.upstream)).toEqual(good);
  });
});

describe('UpstreamPool over TCP after TC=1', () => {
  it('retries the question over TCP to the same upstream and returns the whole answer', async () => {
    const up = await startUdpForTcp((q, fake) => {
      fake.send(reply(q, { flags: 0x8380, answers: [] }), q.rinfo); // TC=1, no records
    });
    const many = Array.from({ length: 200 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    let tcpReply: Buffer = Buffer.alloc(0);
    const tcp = await startTcpBeside(up, (q, conn) => {
      tcpReply = reply(q, { answers: many });
      const framed = frame(tcpReply);
      conn.write(framed.subarray(0, 1)); // the length split across segments
      setTimeout(() => conn.write(framed.subarray(1, 900)), 10);
      setTimeout(() => conn.write(framed.subarray(900)), 20);
    });
    const { pool, results } = makePool([up]);
    const answer: UpstreamAnswer = await pool.query(question('big.example.com'));
    expect(answer.transport).toBe('tcp');
    expect(answer.upstream).toBe(up.label);
    expect(answer.message.equals(tcpReply)).toBe(true);
    expect(addresses(answer.message)).toEqual(many);
    expect(tcp.queries).toHaveLength(1);
    expect(tcp.queries[0]!.nameWire.toString('latin1').toLowerCase()).toBe(wireName('big.example.com').toString('latin1'));
    expect(results.map((r) => r.outcome)).toEqual(['truncated', 'ok']);
    await tcp.closed; // the pool closes the connection after the answer
  });

  it('does not accept a TCP answer to another question', async () => {
    const up = await startUdpForTcp((q, fake) => {
      fake.send(reply(q, { flags: 0x8380, answers: [] }), q.rinfo);
    });
    await startTcpBeside(up, (q, conn) => {
      conn.write(frame(reply(q, { qtype: 28 })));
    });
    const { pool } = makePool([up], { timeoutMs: 200, deadlineMs: 1000 });
    const err = await rejection(pool.query(question('big.example.com')));
    expect(err.details).toEqual({ upstream: up.label, kind: 'mismatch' });
  });
});

describe('UpstreamPool handles', () => {
  it('keeps no handle open: a pool never closed does not hold the process, close() ends pending work at once', async () => {
    const answering = await startUdp();
    const silent = await startUdp(null);
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-upstream-'));
    const src = (path: string): string => JSON.stringify(fileURLToPath(new URL(`../../src/${path}`, import.meta.url)));
    const script = join(dir, 'child.mts');
    await writeFile(
      script,
      `import { UpstreamPool } from ${src('dns/upstream.ts')};
import { silentLogger } from ${src('observability/logger.ts')};
const q = { nameWire: Buffer.from([3, 0x77, 0x77, 0x77, 0]), name: 'www', qtype: 1, qclass: 1, dnssecOk: false, checkingDisabled: false };
const open = new UpstreamPool([${JSON.stringify(answering.label)}], { logger: silentLogger });
const answer = await open.query(q); // this pool is never closed
const closing = new UpstreamPool([${JSON.stringify(silent.label)}], { logger: silentLogger });
const pending = closing.query(q).catch((e) => e.details.kind);
await new Promise((r) => setTimeout(r, 50));
await closing.close();
const kind = await pending;
const closedAt = performance.now();
process.on('exit', () => {
  console.log(JSON.stringify({ bytes: answer.message.length, kind, exitAfterCloseMs: performance.now() - closedAt }));
});
`,
    );
    try {
      const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const killer = setTimeout(() => child.kill(), 10_000);
        child.on('close', (code) => {
          clearTimeout(killer);
          resolve({ code, stdout, stderr });
        });
      });
      expect(out.code, out.stderr).toBe(0);
      const report = JSON.parse(out.stdout) as { bytes: number; kind: string; exitAfterCloseMs: number };
      expect(report.bytes).toBeGreaterThan(12);
      expect(report.kind).toBe('closed');
      expect(report.exitAfterCloseMs).toBeLessThan(500); // the 1.8 s deadline timer is gone
      expect(answering.queries).toHaveLength(1);
      expect(silent.queries).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
