/**
 * DNS side by side: portcullis, dnsmasq and unbound, configured alike — the same local upstream,
 * the same blocked names (every catalog core domain in blocklists/*.yaml, NXDOMAIN), loopback
 * clients only, no rate limit — each pinned to CPU 0. dnsperf and the upstream (a separate
 * dnsmasq answering every name with 192.0.2.1, TTL 1 h) run on CPU 1.
 *
 *   npm run bench:dns          (DURATION=10 RUNS=3 WARMUP=2 CLIENTS=20 OUTSTANDING=100
 *                               MAX_OTHER_PCT=10 ATTEMPTS=3)
 *
 * Workloads:
 *   cache-hit  100 allowed names, repeated (warmed first)
 *   blocked    50,000 distinct subdomains of the catalog's core domains
 *   mixed      70% cache hits, 20% blocked, 10% misses of names never asked before
 *
 * Metrics per server: QPS, latency p50/p99 (from dnsperf -v per-query latencies, µs
 * resolution; dnsperf 2.10 has no percentile option), average and max (dnsperf's summary),
 * lost queries, and the CPU use of the server and of dnsperf over the steady part of the run:
 * a server below 95% CPU while dnsperf is at >= 95% was limited by the load generator (one core
 * of dnsperf drives about 140k QPS here), and its QPS is a lower bound. A run in which other
 * processes on the machine took more than MAX_OTHER_PCT of CPU is repeated (up to ATTEMPTS). A
 * plain Node dgram echo on the same core gives the ceiling for any Node server. Median of RUNS
 * runs; JSON to bench/results/dns-<date>.json.
 *
 * Target (issue 4, "Speed"): cache-hit and blocked QPS >= 1.0x dnsmasq; < 0.8x is not done.
 *
 * Misses (PHASES=miss runs only these; PHASES=compare only the above): every query a name never
 * asked before, so every one goes upstream, to an unbound on CPU 1 that answers a whole zone
 * from local data, over plain DNS and over DoT. portcullis and unbound (forward-zone, and
 * forward-tls-upstream for DoT) each forward over both; the report gives QPS, latency and CPU
 * per query, and the cost of encryption per query (DoT minus plain) for each.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createReadStream, createWriteStream, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse, stringify } from 'yaml';
import { makeTestPki } from '../test/support/test-pki.js';
import { unboundServerLines } from '../test/support/unbound.js';

function envInt(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got ${raw ?? ''}`);
  return value;
}

const DURATION_SEC = envInt('DURATION', 10, 1);
const RUNS = envInt('RUNS', 3, 1);
const WARMUP_SEC = envInt('WARMUP', 2, 0);
/** dnsperf -c: client sockets (source ports). */
const CLIENTS = envInt('CLIENTS', 20, 1);
/**
 * dnsperf -q: queries outstanding. 100 keeps every server at ~100% CPU or dnsperf at its limit
 * with no loss; 300 and more only add loss and queueing latency (measured: -q 300 and 1000 lost
 * queries on every server and gave no more QPS; -c 1 and -c 100 gave no more than -c 20).
 */
const OUTSTANDING = envInt('OUTSTANDING', 100, 1);
/** A run in which other processes took more CPU than this (both cores together) is repeated. */
const MAX_OTHER_PCT = envInt('MAX_OTHER_PCT', 10, 0);
const ATTEMPTS = envInt('ATTEMPTS', 3, 1);
const MAX_QPS = 500_000;
const QUERY_TIMEOUT_SEC = 2;
const SERVER_CPU = '0';
const LOAD_CPU = '1';
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
/** The mixed workload's miss names must never repeat within a run: lines enough for this rate. */
const MIXED_LINES_PER_SEC = 300_000;
const HIT_NAMES = 100;
const BLOCKED_NAMES = 50_000;
const UPSTREAM_ANSWER = '192.0.2.1';

const PHASES = process.env.PHASES ?? 'all';
if (!['all', 'compare', 'miss'].includes(PHASES)) throw new Error(`PHASES must be all, compare or miss, got ${PHASES}`);
const MISS_ZONE = 'miss.example.net';
const TLS_NAME = 'bench.test';

const SERVERS = ['portcullis', 'dnsmasq', 'unbound'] as const;
const WORKLOADS = ['cache-hit', 'blocked', 'mixed'] as const;
type ServerName = (typeof SERVERS)[number] | 'node-echo';
type Workload = (typeof WORKLOADS)[number];

interface Running {
  name: string;
  child: ChildProcess;
  output: string;
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-dnsbench-'));
const running: Running[] = [];

// ---------------------------------------------------------------------------------------------
// processes

/** Starts `command` pinned to `cpu`; keeps the last few KB of its output for error messages. */
function launch(name: string, cpu: string, command: string, args: string[]): Running {
  const child = spawn('taskset', ['-c', cpu, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const entry: Running = { name, child, output: '' };
  const keep = (chunk: Buffer): void => {
    entry.output = (entry.output + chunk.toString()).slice(-8192);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('error', (e) => {
    entry.output += `\nspawn error: ${e.message}`;
  });
  running.push(entry);
  return entry;
}

function isAlive(entry: Running): boolean {
  return entry.child.exitCode === null && entry.child.signalCode === null;
}

async function stop(entry: Running): Promise<void> {
  if (!isAlive(entry)) return;
  const exited = new Promise<void>((resolve) => entry.child.once('exit', () => resolve()));
  entry.child.kill('SIGTERM');
  const timer = setTimeout(() => entry.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

async function stopAll(): Promise<void> {
  await Promise.all(running.map((entry) => stop(entry)));
}

/** Last resort on exit: nothing this bench started may outlive it. */
process.on('exit', () => {
  for (const entry of running) if (isAlive(entry)) entry.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every process this bench started`);
    void stopAll().finally(() => process.exit(130));
  });
}

/** A port free on 127.0.0.1 for both UDP and TCP (the servers bind both). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const udp = createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcp = createServer();
    const isFree = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (isFree) {
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      return port;
    }
  }
  throw new Error('no free port on 127.0.0.1');
}

// ---------------------------------------------------------------------------------------------
// DNS probe: one A query over UDP, for readiness and the sanity checks

interface ProbeAnswer {
  rcode: number;
  answers: number;
}

function encodeQuery(id: number, name: string): Buffer {
  const labels = name.split('.').filter((l) => l.length > 0);
  const out = Buffer.alloc(12 + labels.reduce((n, l) => n + l.length + 1, 1) + 4);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x0100, 2); // RD
  out.writeUInt16BE(1, 4);
  let pos = 12;
  for (const label of labels) {
    out[pos++] = label.length;
    pos += out.write(label, pos, 'ascii');
  }
  out[pos++] = 0;
  out.writeUInt16BE(1, pos); // A
  out.writeUInt16BE(1, pos + 2); // IN
  return out;
}

function probe(port: number, name: string, timeoutMs: number): Promise<ProbeAnswer | null> {
  const socket = createSocket('udp4');
  const id = Math.floor(Math.random() * 0xffff);
  return new Promise((resolve) => {
    const done = (answer: ProbeAnswer | null): void => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.on('error', () => done(null));
    socket.on('message', (msg) => {
      if (msg.length >= 12 && msg.readUInt16BE(0) === id) done({ rcode: msg[3]! & 0xf, answers: msg.readUInt16BE(6) });
    });
    socket.send(encodeQuery(id, name), port, '127.0.0.1');
  });
}

async function waitReady(entry: Running, port: number): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!isAlive(entry)) throw new Error(`${entry.name} exited (${entry.child.exitCode ?? entry.child.signalCode}): ${entry.output.slice(-1500)}`);
    if ((await probe(port, 'ready.bench.example.net', 200)) !== null) return;
  }
  throw new Error(`${entry.name} did not answer on 127.0.0.1:${port} within ${READY_TIMEOUT_MS} ms: ${entry.output.slice(-1500)}`);
}

// ---------------------------------------------------------------------------------------------
// the servers

/** Every core-tier domain of every catalog app (blocklists/*.yaml). */
function coreDomains(): string[] {
  const folder = new URL('../blocklists/', import.meta.url);
  const out: string[] = [];
  for (const file of readdirSync(folder).filter((f) => f.endsWith('.yaml')).sort()) {
    const doc = parse(readFileSync(new URL(file, folder), 'utf8')) as { domains?: { value: string; tier: string }[] | null };
    for (const d of doc.domains ?? []) if (d.tier === 'core') out.push(d.value.toLowerCase());
  }
  if (out.length === 0) throw new Error('no core domains found in blocklists/*.yaml');
  return out;
}

async function startUpstream(): Promise<number> {
  const port = await freePort();
  const entry = launch('upstream', LOAD_CPU, '/usr/sbin/dnsmasq', [
    '--no-daemon',
    '--conf-file=/dev/null',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--address=/#/${UPSTREAM_ANSWER}`,
    '--local-ttl=3600',
    '--cache-size=0',
    '--user=root',
    '--pid-file=',
    '--log-facility=-',
  ]);
  await waitReady(entry, port);
  return port;
}

/** `upstream` as dns.upstreams takes it; `upstreamCa` for a tls:// one. */
async function startPortcullis(upstream: string, name = 'portcullis', upstreamCa?: string): Promise<{ entry: Running; port: number }> {
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    stringify({
      dns: {
        listen: '127.0.0.1:0',
        upstreams: [upstream],
        ...(upstreamCa === undefined ? {} : { upstreamCa }),
        rateLimit: { perSecond: 0 },
        allowClients: ['127.0.0.0/8'],
      },
      proxy: { tls: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0' } },
      admin: { listen: '127.0.0.1:0' },
      store: { path: join(dir, `${name}-data`) },
      log: { level: 'info' },
    }),
  );
  const cli = new URL('../dist/cli.js', import.meta.url).pathname;
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (npm run bench:dns does)`);
  const entry = launch(name, SERVER_CPU, process.execPath, [cli, 'start', '--config', config]);
  // The "dns listening" log line carries the UDP port portcullis bound.
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`portcullis did not log "dns listening" within ${READY_TIMEOUT_MS} ms: ${entry.output.slice(-1500)}`)), READY_TIMEOUT_MS);
    const onExit = (): void => {
      clearTimeout(timer);
      reject(new Error(`portcullis exited: ${entry.output.slice(-1500)}`));
    };
    entry.child.once('exit', onExit);
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (!line.includes('dns listening')) continue;
        const log = JSON.parse(line) as { udp?: { port?: number } };
        if (typeof log.udp?.port !== 'number') continue;
        clearTimeout(timer);
        entry.child.off('exit', onExit);
        entry.child.stdout!.off('data', onData);
        resolve(log.udp.port);
        return;
      }
    };
    entry.child.stdout!.on('data', onData);
  });
  await waitReady(entry, port);
  return { entry, port };
}

async function startDnsmasq(upstreamPort: number, domains: string[]): Promise<{ entry: Running; port: number }> {
  const port = await freePort();
  const entry = launch('dnsmasq', SERVER_CPU, '/usr/sbin/dnsmasq', [
    '--no-daemon',
    '--conf-file=/dev/null',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--server=127.0.0.1#${upstreamPort}`,
    '--cache-size=10000',
    '--user=root',
    '--pid-file=',
    '--log-facility=-',
    ...domains.map((d) => `--address=/${d}/`),
  ]);
  await waitReady(entry, port);
  return { entry, port };
}

/** `forward` is the forward-zone's lines (plain by default); `extra` more server: lines. */
async function startUnbound(upstreamPort: number, domains: string[], options: { name?: string; forward?: string[]; extra?: string[] } = {}): Promise<{ entry: Running; port: number }> {
  const port = await freePort();
  const name = options.name ?? 'unbound';
  const conf = join(dir, `${name}.conf`);
  writeFileSync(
    conf,
    [
      'server:',
      ...unboundServerLines(dir),
      `  interface: 127.0.0.1@${port}`,
      `  port: ${port}`,
      '  access-control: 0.0.0.0/0 refuse',
      '  do-not-query-localhost: no',
      '  msg-cache-size: 64m',
      '  rrset-cache-size: 64m',
      '  msg-cache-slabs: 1',
      '  rrset-cache-slabs: 1',
      ...(options.extra ?? []),
      ...domains.map((d) => `  local-zone: "${d}." always_nxdomain`),
      'forward-zone:',
      '  name: "."',
      ...(options.forward ?? [`  forward-addr: 127.0.0.1@${upstreamPort}`]),
      '',
    ].join('\n'),
  );
  execFileSync('unbound-checkconf', [conf], { stdio: 'pipe' });
  const entry = launch(name, SERVER_CPU, '/usr/sbin/unbound', ['-d', '-c', conf]);
  await waitReady(entry, port);
  return { entry, port };
}

/** The ceiling for any Node server here: a dgram socket that turns each query around. */
const ECHO_SOURCE = `
const socket = require('node:dgram').createSocket('udp4');
socket.on('message', (msg, rinfo) => { msg[2] |= 0x80; socket.send(msg, rinfo.port, rinfo.address); });
socket.bind(Number(process.argv[1]), '127.0.0.1');
`;

async function startEcho(): Promise<{ entry: Running; port: number }> {
  const port = await freePort();
  const entry = launch('node-echo', SERVER_CPU, process.execPath, ['-e', ECHO_SOURCE, String(port)]);
  await waitReady(entry, port);
  return { entry, port };
}

/** Each server answers an allowed name with the upstream's address and every core domain with NXDOMAIN. */
async function checkAnswers(name: string, port: number, domains: string[]): Promise<void> {
  const allowed = await probe(port, 'host0.bench.example.net', 2000);
  if (allowed?.rcode !== 0 || allowed.answers < 1) throw new Error(`${name}: host0.bench.example.net got ${JSON.stringify(allowed)}, want NOERROR with an answer`);
  for (const d of domains) {
    for (const q of [d, `check.${d}`]) {
      const blocked = await probe(port, q, 2000);
      if (blocked?.rcode !== 3) throw new Error(`${name}: ${q} got ${JSON.stringify(blocked)}, want NXDOMAIN`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// workloads

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const hitNames = Array.from({ length: HIT_NAMES }, (_, i) => `host${i}.bench.example.net`);

function blockedNames(domains: string[]): string[] {
  const rng = mulberry32(7);
  const prefixes = ['', 'api.', 'cdn.', 'talk.', 'media.', 'a.b.'];
  return Array.from({ length: BLOCKED_NAMES }, (_, i) => `${prefixes[i % prefixes.length]}n${i.toString(36)}.${domains[Math.floor(rng() * domains.length)]}`);
}

async function writeLines(file: string, count: number, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(file);
  let chunk = '';
  for (let i = 0; i < count; i++) {
    chunk += `${line(i)} A\n`;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', resolve));
      chunk = '';
    }
  }
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(chunk, resolve);
  });
}

/** 70% hits, 20% blocked, 10% misses; `tag` makes this file's misses new to every server. */
async function writeMixed(file: string, tag: string, blocked: string[]): Promise<void> {
  const rng = mulberry32(11);
  const lines = MIXED_LINES_PER_SEC * Math.max(DURATION_SEC, WARMUP_SEC);
  await writeLines(file, lines, (i) => {
    const r = rng();
    if (r < 0.7) return hitNames[i % hitNames.length]!;
    if (r < 0.9) return blocked[i % blocked.length]!;
    return `m${i.toString(36)}.${tag}.miss.example.net`;
  });
}

// ---------------------------------------------------------------------------------------------
// dnsperf

interface PerfResult {
  qps: number;
  p50Ms: number;
  p99Ms: number;
  avgMs: number;
  maxMs: number;
  lost: number;
  sent: number;
  runSec: number;
  rcodes: Record<string, number>;
  serverCpuPct: number;
  dnsperfCpuPct: number;
  /** CPU time on both cores taken by neither the server, dnsperf nor the upstream (other tenants). */
  otherCpuPct: number;
  /** Which attempt this is (runs disturbed by other processes are repeated). */
  attempts: number;
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a process (all its threads), in seconds; null once it has gone. */
function processCpuSec(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Seconds every CPU together spent running processes (user, nice, system; not irq, softirq, steal, idle). */
function totalBusySec(): number {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return ((v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0)) / CLOCK_TICKS;
}

interface CpuSample {
  at: number;
  server: number | null;
  dnsperf: number | null;
  upstream: number | null;
  total: number;
}

function sample(server: Running, dnsperf: ChildProcess, upstream: Running): CpuSample {
  return {
    at: performance.now(),
    server: processCpuSec(server.child.pid),
    dnsperf: processCpuSec(dnsperf.pid),
    upstream: processCpuSec(upstream.child.pid),
    total: totalBusySec(),
  };
}

function pct(a: CpuSample, b: CpuSample, key: 'server' | 'dnsperf' | 'upstream' | 'total'): number {
  const x = a[key];
  const y = b[key];
  if (x === null || y === null) return Number.NaN;
  return ((y - x) / ((b.at - a.at) / 1000)) * 100;
}

/** Percentiles from the per-query lines of dnsperf -v ("> NOERROR name A 0.000123"). */
async function latencyPercentiles(file: string): Promise<{ p50Ms: number; p99Ms: number }> {
  const maxUs = QUERY_TIMEOUT_SEC * 1_000_000;
  const histogram = new Uint32Array(maxUs + 1);
  let count = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.startsWith('> ')) continue;
    const seconds = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(seconds) || line.startsWith('> T ')) continue;
    histogram[Math.min(maxUs, Math.round(seconds * 1_000_000))]!++;
    count++;
  }
  const at = (p: number): number => {
    const rank = Math.ceil(count * p);
    let seen = 0;
    for (let us = 0; us <= maxUs; us++) {
      seen += histogram[us]!;
      if (seen >= rank) return us / 1000;
    }
    return Number.NaN;
  };
  return count === 0 ? { p50Ms: Number.NaN, p99Ms: Number.NaN } : { p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function dnsperf(server: Running, port: number, upstream: Running, file: string, seconds: number, isMeasured: boolean): Promise<PerfResult | null> {
  const outFile = join(dir, 'dnsperf.out');
  const fd = openSync(outFile, 'w');
  const args = ['-c', LOAD_CPU, 'dnsperf', '-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-n', '1', '-c', String(CLIENTS), '-q', String(OUTSTANDING), '-Q', String(MAX_QPS), '-t', String(QUERY_TIMEOUT_SEC)];
  if (isMeasured) args.push('-v');
  const child = spawn('taskset', args, { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  const entry: Running = { name: 'dnsperf', child, output: '' };
  running.push(entry);
  child.stderr!.on('data', (chunk: Buffer) => {
    entry.output = (entry.output + chunk.toString()).slice(-4096);
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + QUERY_TIMEOUT_SEC + 30) * 1000);
  // CPU use over the steady part: from 0.5 s in to 0.5 s before the time limit.
  const window = Math.max(0.2, seconds - 1);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const first = sample(server, child, upstream);
  await new Promise((resolve) => setTimeout(resolve, window * 1000));
  const second = sample(server, child, upstream);
  const code = await exited;
  clearTimeout(killer);
  running.splice(running.indexOf(entry), 1);
  if (code !== 0) throw new Error(`dnsperf against ${server.name} exited with ${code}: ${entry.output}`);
  if (!isMeasured) return null;

  const out = readFileSync(outFile, 'utf8').slice(-8192);
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? Number.NaN);
  const rcodes: Record<string, number> = {};
  for (const m of (/Response codes:\s+(.*)/.exec(out)?.[1] ?? '').matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]!] = Number(m[2]);
  const { p50Ms, p99Ms } = await latencyPercentiles(outFile);
  const serverCpuPct = pct(first, second, 'server');
  const dnsperfCpuPct = pct(first, second, 'dnsperf');
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    p50Ms,
    p99Ms,
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxMs: num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000,
    lost: num(/Queries lost:\s+(\d+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    runSec: num(/Run time \(s\):\s+([\d.]+)/),
    rcodes,
    serverCpuPct,
    dnsperfCpuPct,
    otherCpuPct: Math.max(0, pct(first, second, 'total') - serverCpuPct - dnsperfCpuPct - pct(first, second, 'upstream')),
    attempts: 1,
  };
}

// ---------------------------------------------------------------------------------------------
// report

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The first line of a tool's version output that matches `pattern` (dnsperf -h exits non-zero). */
function version(command: string, args: string[], pattern: RegExp): string {
  let out: string;
  try {
    out = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e: unknown) {
    const failed = e as { stdout?: string; stderr?: string };
    out = `${failed.stdout ?? ''}\n${failed.stderr ?? ''}`;
  }
  return pattern.exec(out)?.[1] ?? 'unknown';
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${head}+dirty-src` : head;
  } catch {
    return 'unknown';
  }
}

const METRICS = [
  { key: 'qps', label: 'QPS', digits: 0 },
  { key: 'p50Ms', label: 'p50 ms', digits: 3 },
  { key: 'p99Ms', label: 'p99 ms', digits: 3 },
  { key: 'avgMs', label: 'avg ms', digits: 3 },
  { key: 'maxMs', label: 'max ms', digits: 3 },
  { key: 'lost', label: 'lost', digits: 0 },
  { key: 'serverCpuPct', label: 'server CPU %', digits: 0 },
  { key: 'dnsperfCpuPct', label: 'dnsperf CPU %', digits: 0 },
] as const;

/** cache-hit, blocked, mixed: portcullis, dnsmasq and unbound side by side, plus the Node echo ceiling. */
async function comparePhase(): Promise<Record<string, unknown>> {
  const domains = coreDomains();
  const blocked = blockedNames(domains);
  const files: Record<Workload, string> = { 'cache-hit': join(dir, 'cache-hit.txt'), blocked: join(dir, 'blocked.txt'), mixed: join(dir, 'mixed.txt') };
  // -n 1 stops dnsperf at the end of its file (so the mixed misses never repeat): every file
  // holds more lines than a run can send.
  const lines = MIXED_LINES_PER_SEC * Math.max(DURATION_SEC, WARMUP_SEC);
  const cycle = (names: string[], file: string): Promise<void> => writeLines(file, lines, (i) => names[i % names.length]!);
  await cycle(hitNames, files['cache-hit']);
  await cycle(blocked, files.blocked);

  const upstreamPort = await startUpstream();
  const upstream = running.find((r) => r.name === 'upstream')!;
  const servers: Record<ServerName, { entry: Running; port: number }> = {
    portcullis: await startPortcullis(`127.0.0.1:${upstreamPort}`),
    dnsmasq: await startDnsmasq(upstreamPort, domains),
    unbound: await startUnbound(upstreamPort, domains),
    'node-echo': await startEcho(),
  };
  for (const name of SERVERS) await checkAnswers(name, servers[name].port, domains);

  const busyBefore = totalBusySec();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const idleLoadPct = (totalBusySec() - busyBefore) * 100;

  console.log(`warming up (${WARMUP_SEC}s per server and workload)…`);
  if (WARMUP_SEC > 0) {
    await writeMixed(files.mixed, 'warm', blocked);
    for (const name of [...SERVERS, 'node-echo'] as const) {
      for (const workload of WORKLOADS) {
        if (name === 'node-echo' && workload !== 'cache-hit') continue;
        await dnsperf(servers[name].entry, servers[name].port, upstream, files[workload], WARMUP_SEC, false);
      }
    }
  }

  const results: Record<string, Record<string, PerfResult[]>> = {};
  let disturbed = 0;
  for (let run = 0; run < RUNS; run++) {
    await writeMixed(files.mixed, `r${run}`, blocked);
    for (const workload of WORKLOADS) {
      for (const name of [...SERVERS, 'node-echo'] as const) {
        if (name === 'node-echo' && workload !== 'cache-hit') continue;
        const server = servers[name];
        // A run other processes took CPU from is run again (mixed with new miss names), and the
        // least disturbed attempt is kept.
        let best: PerfResult | null = null;
        for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
          let file = files[workload];
          if (workload === 'mixed' && attempt > 1) {
            file = join(dir, 'mixed-again.txt');
            await writeMixed(file, `r${run}${name}a${attempt}`, blocked);
          }
          const r = await dnsperf(server.entry, server.port, upstream, file, DURATION_SEC, true);
          if (r === null) throw new Error('dnsperf gave no result');
          r.attempts = attempt;
          if (best === null || r.otherCpuPct < best.otherCpuPct) best = { ...r };
          console.log(`run ${run + 1}/${RUNS} ${workload.padEnd(9)} ${name.padEnd(10)} ${r.qps.toFixed(0).padStart(7)} qps  p99 ${r.p99Ms.toFixed(3)} ms  lost ${r.lost}  cpu server ${r.serverCpuPct.toFixed(0)}% dnsperf ${r.dnsperfCpuPct.toFixed(0)}% other ${r.otherCpuPct.toFixed(0)}%`);
          if (r.otherCpuPct <= MAX_OTHER_PCT) break;
          console.log(`  other processes took ${r.otherCpuPct.toFixed(0)}% CPU (> ${MAX_OTHER_PCT}%)${attempt < ATTEMPTS ? '; again' : '; keeping the least disturbed attempt'}`);
          await new Promise((resolve) => setTimeout(resolve, 3000 * attempt));
        }
        if (best!.otherCpuPct > MAX_OTHER_PCT) disturbed++;
        ((results[workload] ??= {})[name] ??= []).push(best!);
      }
    }
  }

  // Every blocked query must have been NXDOMAIN, on every server.
  for (const name of SERVERS) {
    for (const r of results.blocked![name]!) {
      const nx = r.rcodes.NXDOMAIN ?? 0;
      const total = Object.values(r.rcodes).reduce((a, b) => a + b, 0);
      if (nx !== total) throw new Error(`${name}: blocked workload answered ${JSON.stringify(r.rcodes)}, want only NXDOMAIN`);
    }
  }

  const table: Record<string, Record<string, Record<string, number>>> = {};
  for (const workload of WORKLOADS) {
    for (const { key } of METRICS) {
      const row: Record<string, number> = {};
      for (const name of SERVERS) row[name] = median(results[workload]![name]!.map((r) => r[key]));
      row.ratioDnsmasq = row.portcullis! / row.dnsmasq!;
      row.ratioUnbound = row.portcullis! / row.unbound!;
      (table[workload] ??= {})[key] = row;
    }
  }
  const echoQps = median(results['cache-hit']!['node-echo']!.map((r) => r.qps));
  const echoCpu = median(results['cache-hit']!['node-echo']!.map((r) => r.serverCpuPct));
  const maxOther = Math.max(...Object.values(results).flatMap((byServer) => Object.values(byServer).flatMap((rs) => rs.map((r) => r.otherCpuPct))));

  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus()[0]?.model ?? 'unknown'} (${cpus().length} CPUs)`,
    commit: commit(),
    dnsperf: version('dnsperf', ['-h'], /^Version (\S+)/m),
    dnsmasq: version('/usr/sbin/dnsmasq', ['--version'], /version (\S+)/),
    unbound: version('/usr/sbin/unbound', ['-V'], /^Version (\S+)/m),
    durationSec: DURATION_SEC,
    runs: RUNS,
    warmupSec: WARMUP_SEC,
    dnsperfArgs: `-c ${CLIENTS} -q ${OUTSTANDING} -Q ${MAX_QPS} -t ${QUERY_TIMEOUT_SEC} -l ${DURATION_SEC} -n 1 -v`,
    pinning: { servers: Number(SERVER_CPU), dnsperfAndUpstream: Number(LOAD_CPU) },
    blockedDomains: domains.length,
    idleLoadPctBeforeRuns: Number(idleLoadPct.toFixed(1)),
    maxOtherCpuPctKept: Number(maxOther.toFixed(1)),
    disturbedMeasurements: disturbed,
  };
  console.log('');
  console.log(`portcullis DNS bench — node ${meta.node}, ${meta.cpu}, commit ${meta.commit}`);
  console.log(`dnsperf ${meta.dnsperf}, dnsmasq ${meta.dnsmasq}, unbound ${meta.unbound}`);
  console.log(`servers on CPU ${SERVER_CPU}; dnsperf (${meta.dnsperfArgs}) and upstream on CPU ${LOAD_CPU}; median of ${RUNS} runs of ${DURATION_SEC}s after ${WARMUP_SEC}s warm-up`);
  console.log('p50/p99 from dnsperf -v per-query latencies; avg/max from dnsperf; CPU % over the steady part of each run');
  const w = [10, 14, 11, 11, 11, 11, 11];
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' ');
  console.log(line(['workload', 'metric', 'portcullis', 'dnsmasq', 'unbound', 'p/dnsmasq', 'p/unbound']));
  for (const workload of WORKLOADS) {
    for (const { key, label, digits } of METRICS) {
      const row = table[workload]![key]!;
      const ratio = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '-');
      console.log(line([workload, label, row.portcullis!.toFixed(digits), row.dnsmasq!.toFixed(digits), row.unbound!.toFixed(digits), ratio(row.ratioDnsmasq!), ratio(row.ratioUnbound!)]));
    }
  }
  console.log(`node dgram echo on the same core (ceiling for a Node server): ${echoQps.toFixed(0)} QPS at ${echoCpu.toFixed(0)}% CPU; portcullis cache-hit = ${(table['cache-hit']!.qps!.portcullis! / echoQps).toFixed(2)}x echo`);
  for (const workload of WORKLOADS) {
    for (const name of SERVERS) {
      const cpu = table[workload]!.serverCpuPct![name]!;
      const loadCpu = table[workload]!.dnsperfCpuPct![name]!;
      if (cpu < 95 && loadCpu >= 95) console.log(`note: ${workload}/${name}: server at ${cpu.toFixed(0)}% CPU, dnsperf at ${loadCpu.toFixed(0)}%: load-generator bound, its QPS is a lower bound${name === 'portcullis' ? '' : ' (and p/' + name + ' an upper bound)'}`);
    }
  }
  if (disturbed > 0) console.log(`warning: ${disturbed} measurement(s) stayed disturbed by other processes (up to ${maxOther.toFixed(0)}% CPU) after ${ATTEMPTS} attempts; those numbers are noisy`);
  for (const workload of ['cache-hit', 'blocked'] as const) {
    const ratio = table[workload]!.qps!.ratioDnsmasq!;
    console.log(`target ${workload} QPS >= 1.0x dnsmasq: ${ratio.toFixed(2)}x — ${ratio >= 1 ? 'met' : ratio >= 0.8 ? 'below target' : 'NOT DONE (< 0.8x): profile portcullis'}`);
  }

  await stopAll();
  running.splice(0);
  return { ...meta, nodeEchoCacheHitQps: echoQps, table, raw: results };
}

// ---------------------------------------------------------------------------------------------
// misses: plain and DoT upstreams

/** An unbound on the load CPU answering every name under MISS_ZONE, over plain DNS and over TLS. */
async function startMissUpstream(pki: { cert: string; key: string }): Promise<{ entry: Running; plainPort: number; tlsPort: number }> {
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const conf = join(dir, 'miss-upstream.conf');
  writeFileSync(
    conf,
    [
      'server:',
      ...unboundServerLines(dir),
      `  interface: 127.0.0.1@${plainPort}`,
      `  interface: 127.0.0.1@${tlsPort}`,
      `  tls-port: ${tlsPort}`,
      `  tls-service-pem: "${pki.cert}"`,
      `  tls-service-key: "${pki.key}"`,
      '  incoming-num-tcp: 100',
      '  tcp-idle-timeout: 120000',
      `  local-zone: "${MISS_ZONE}." redirect`,
      `  local-data: "${MISS_ZONE}. 3600 IN A ${UPSTREAM_ANSWER}"`,
      '',
    ].join('\n'),
  );
  execFileSync('unbound-checkconf', [conf], { stdio: 'pipe' });
  const entry = launch('miss-upstream', LOAD_CPU, '/usr/sbin/unbound', ['-d', '-c', conf]);
  await waitReady(entry, plainPort);
  return { entry, plainPort, tlsPort };
}

const MISS_SERVERS = ['portcullis-plain', 'portcullis-dot', 'unbound-plain', 'unbound-dot'] as const;
type MissServer = (typeof MISS_SERVERS)[number];

/** Every query a new name, so every one goes upstream: plain DNS against DoT, portcullis against unbound. */
async function missPhase(): Promise<Record<string, unknown>> {
  const pki = await makeTestPki(dir, [TLS_NAME]);
  const upstream = await startMissUpstream(pki);
  const plain = `127.0.0.1:${upstream.plainPort}`;
  const servers: Record<MissServer, { entry: Running; port: number }> = {
    'portcullis-plain': await startPortcullis(plain, 'portcullis-plain'),
    'portcullis-dot': await startPortcullis(`tls://127.0.0.1:${upstream.tlsPort}#${TLS_NAME}`, 'portcullis-dot', pki.ca),
    'unbound-plain': await startUnbound(upstream.plainPort, [], { name: 'unbound-plain' }),
    'unbound-dot': await startUnbound(upstream.plainPort, [], {
      name: 'unbound-dot',
      extra: [`  tls-cert-bundle: "${pki.ca}"`],
      forward: ['  forward-tls-upstream: yes', `  forward-addr: 127.0.0.1@${upstream.tlsPort}#${TLS_NAME}`],
    }),
  };
  for (const name of MISS_SERVERS) {
    const answer = await probe(servers[name].port, `check.${MISS_ZONE}`, 2000);
    if (answer?.rcode !== 0 || answer.answers < 1) throw new Error(`${name}: check.${MISS_ZONE} got ${JSON.stringify(answer)}, want NOERROR with an answer`);
  }
  const file = join(dir, 'miss.txt');
  const writeMisses = (tag: string): Promise<void> => writeLines(file, MIXED_LINES_PER_SEC * Math.max(DURATION_SEC, WARMUP_SEC), (i) => `m${i.toString(36)}.${tag}.${MISS_ZONE}`);
  if (WARMUP_SEC > 0) {
    console.log(`misses: warming up (${WARMUP_SEC}s per server)…`);
    for (const name of MISS_SERVERS) {
      await writeMisses(`warm-${name}`);
      await dnsperf(servers[name].entry, servers[name].port, upstream.entry, file, WARMUP_SEC, false);
    }
  }
  const raw: Record<string, PerfResult[]> = {};
  for (let run = 0; run < RUNS; run++) {
    for (const name of MISS_SERVERS) {
      // As above: a run other processes took CPU from is run again; the least disturbed is kept.
      let best: PerfResult | null = null;
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        await writeMisses(`r${run}-${name}-a${attempt}`);
        const r = await dnsperf(servers[name].entry, servers[name].port, upstream.entry, file, DURATION_SEC, true);
        if (r === null) throw new Error('dnsperf gave no result');
        r.attempts = attempt;
        if (best === null || r.otherCpuPct < best.otherCpuPct) best = r;
        console.log(`run ${run + 1}/${RUNS} miss ${name.padEnd(16)} ${r.qps.toFixed(0).padStart(7)} qps  p99 ${r.p99Ms.toFixed(3)} ms  lost ${r.lost}  cpu server ${r.serverCpuPct.toFixed(0)}% other ${r.otherCpuPct.toFixed(0)}%  rcodes ${JSON.stringify(r.rcodes)}`);
        if (r.otherCpuPct <= MAX_OTHER_PCT) break;
        await new Promise((resolve) => setTimeout(resolve, 3000 * attempt));
      }
      (raw[name] ??= []).push(best!);
    }
  }
  const row = (name: MissServer): Record<string, number> => {
    const rs = raw[name]!;
    const qps = median(rs.map((r) => r.qps));
    const cpu = median(rs.map((r) => r.serverCpuPct));
    return { qps, p50Ms: median(rs.map((r) => r.p50Ms)), p99Ms: median(rs.map((r) => r.p99Ms)), lost: median(rs.map((r) => r.lost)), serverCpuPct: cpu, cpuUsPerQuery: ((cpu / 100) * 1e6) / qps };
  };
  const table = Object.fromEntries(MISS_SERVERS.map((name) => [name, row(name)])) as Record<MissServer, Record<string, number>>;
  const cost = (server: 'portcullis' | 'unbound'): Record<string, number> => {
    const p = table[`${server}-plain`];
    const d = table[`${server}-dot`];
    return { cpuUsPerQuery: d.cpuUsPerQuery! - p.cpuUsPerQuery!, p50Ms: d.p50Ms! - p.p50Ms!, qpsRatio: d.qps! / p.qps! };
  };
  const encryptionCost = { portcullis: cost('portcullis'), unbound: cost('unbound') };
  console.log('');
  console.log(`misses (every query upstream; upstream unbound on CPU ${LOAD_CPU}, plain and DoT) — median of ${RUNS} runs of ${DURATION_SEC}s`);
  const w = [18, 9, 9, 9, 8, 13];
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' ');
  console.log(line(['server', 'QPS', 'p50 ms', 'p99 ms', 'CPU %', 'CPU µs/query']));
  for (const name of MISS_SERVERS) {
    const r = table[name];
    console.log(line([name, r.qps!.toFixed(0), r.p50Ms!.toFixed(3), r.p99Ms!.toFixed(3), r.serverCpuPct!.toFixed(0), r.cpuUsPerQuery!.toFixed(1)]));
  }
  for (const transport of ['plain', 'dot'] as const) {
    console.log(`portcullis/unbound ${transport}: QPS ${(table[`portcullis-${transport}`].qps! / table[`unbound-${transport}`].qps!).toFixed(2)}x, CPU per query ${(table[`portcullis-${transport}`].cpuUsPerQuery! / table[`unbound-${transport}`].cpuUsPerQuery!).toFixed(2)}x`);
  }
  for (const server of ['portcullis', 'unbound'] as const) {
    const c = encryptionCost[server];
    console.log(`cost of encryption per query, ${server}: ${c.cpuUsPerQuery! >= 0 ? '+' : ''}${c.cpuUsPerQuery!.toFixed(1)} µs CPU, ${c.p50Ms! >= 0 ? '+' : ''}${(c.p50Ms! * 1000).toFixed(0)} µs p50, DoT QPS ${c.qpsRatio!.toFixed(2)}x plain`);
  }
  await stopAll();
  running.splice(0);
  return { table, encryptionCost, raw };
}

async function main(): Promise<void> {
  const compare = PHASES === 'miss' ? null : await comparePhase();
  const miss = PHASES === 'compare' ? null : await missPhase();
  const resultsDir = new URL('./results/', import.meta.url);
  mkdirSync(resultsDir, { recursive: true });
  const date = new Date().toISOString();
  const out = new URL(`dns-${date.slice(0, 10)}${PHASES === 'all' ? '' : `-${PHASES}`}.json`, resultsDir);
  writeFileSync(out, `${JSON.stringify({ date, node: process.version, commit: commit(), ...(compare ?? {}), ...(miss === null ? {} : { miss }) }, null, 2)}\n`);
  console.log(`\nwrote ${out.pathname}`);
}

try {
  await main();
} finally {
  await stopAll();
}
