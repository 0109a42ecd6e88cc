/**
 * DNS side by side: portcullis, dnsmasq and unbound, configured alike (same local upstream,
 * the same blocked domains: the catalog's core domains), each pinned to CPU 0; dnsperf and the
 * upstream on CPU 1. Workloads: cache-hit, blocked, mixed (70% hits, 20% blocked, 10% misses).
 *
 *   npm run bench:dns                  (DURATION=10 RUNS=3 by default)
 *
 * dnsperf reports QPS, lost queries and average/max latency (it has no percentiles).
 * Target (issue "DNS resolver"): cache-hit and blocked QPS >= 1.0x dnsmasq on one core.
 */
import { spawn, execSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';

const DURATION = Number(process.env.DURATION ?? 10);
const RUNS = Number(process.env.RUNS ?? 3);
const SERVER_CPU = '0';
const LOAD_CPU = '1';
const ports = { upstream: 25_353, portcullis: 25_354, dnsmasq: 25_355, unbound: 25_356, echo: 25_357 };
const dir = mkdtempSync(join(tmpdir(), 'portcullis-dnsbench-'));
const children: ChildProcess[] = [];

function coreDomains(): string[] {
  const out: string[] = [];
  for (const app of ['kakaotalk', 'line', 'didi', 'talkbox', 'vower']) {
    const doc = parse(readFileSync(new URL(`../blocklists/${app}.yaml`, import.meta.url), 'utf8')) as { domains: { value: string; tier: string }[] };
    for (const d of doc.domains) if (d.tier === 'core') out.push(d.value);
  }
  return out;
}

/**
 * A fast upstream in its own process (dnsperf runs synchronously here, so an in-process
 * responder would stall): answers every query with one A record (TTL 1 h).
 */
const UPSTREAM_SOURCE = `
const socket = require('node:dgram').createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  if (msg.length < 12) return;
  let pos = 12;
  while (pos < msg.length && msg[pos] !== 0) pos += msg[pos] + 1;
  const questionEnd = pos + 5;
  if (questionEnd > msg.length) return;
  const out = Buffer.allocUnsafe(questionEnd + 16);
  msg.copy(out, 0, 0, questionEnd);
  out.writeUInt16BE(0x8180 | (msg.readUInt16BE(2) & 0x0100), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 6);
  out.writeUInt32BE(0, 8);
  out.set([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1], questionEnd);
  socket.send(out, rinfo.port, rinfo.address);
});
socket.bind(Number(process.argv[1]), '127.0.0.1', () => console.log('upstream ready'));
`;

function startUpstream(): Promise<void> {
  const child = spawn('taskset', ['-c', LOAD_CPU, process.execPath, '-e', UPSTREAM_SOURCE, String(ports.upstream)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`upstream exited with ${code}`)));
  });
}

function start(name: string, command: string, args: string[], readyPattern: RegExp | null): Promise<void> {
  const child = spawn('taskset', ['-c', SERVER_CPU, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => (readyPattern === null ? resolve() : reject(new Error(`${name} did not start: ${output.slice(-500)}`))), readyPattern === null ? 1500 : 15_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (readyPattern?.test(output) === true) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}: ${output.slice(-500)}`));
    });
  });
}

async function startServers(domains: string[]): Promise<void> {
  const config = join(dir, 'portcullis.yaml');
  writeFileSync(
    config,
    [
      `dns:`,
      `  listen: 127.0.0.1:${ports.portcullis}`,
      `  upstreams: [127.0.0.1:${ports.upstream}]`,
      `  rateLimit: { perSecond: 0 }`,
      `  allowClients: [127.0.0.0/8]`,
      `proxy:`,
      `  tls: { listen: 127.0.0.1:0 }`,
      `  http: { listen: 127.0.0.1:0 }`,
      `admin:`,
      `  listen: 127.0.0.1:0`,
      `store:`,
      `  path: ${join(dir, 'data')}`,
      `log:`,
      `  level: warn`,
    ].join('\n'),
  );
  const cli = new URL('../dist/cli.js', import.meta.url).pathname;
  await start('portcullis', process.execPath, [cli, 'start', '--config', config], null);
  await start('dnsmasq', '/usr/sbin/dnsmasq', [
    '--no-daemon',
    `--port=${ports.dnsmasq}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--server=127.0.0.1#${ports.upstream}`,
    '--cache-size=10000',
    '--user=root',
    '--pid-file=',
    ...domains.map((d) => `--address=/${d}/`),
  ], null);
  const unboundConf = join(dir, 'unbound.conf');
  writeFileSync(
    unboundConf,
    [
      'server:',
      `  interface: 127.0.0.1@${ports.unbound}`,
      '  num-threads: 1',
      '  do-daemonize: no',
      '  chroot: ""',
      '  username: ""',
      '  logfile: ""',
      '  pidfile: ""',
      '  use-syslog: no',
      '  access-control: 127.0.0.0/8 allow',
      '  module-config: "iterator"',
      '  do-not-query-localhost: no',
      '  msg-cache-size: 64m',
      '  rrset-cache-size: 128m',
      ...domains.map((d) => `  local-zone: "${d}." always_nxdomain`),
      'forward-zone:',
      '  name: "."',
      `  forward-addr: 127.0.0.1@${ports.upstream}`,
    ].join('\n'),
  );
  await start('unbound', '/usr/sbin/unbound', ['-d', '-c', unboundConf], null);
  // The ceiling for any Node server on this machine: a dgram socket that echoes each query back.
  await start('node-echo', process.execPath, ['-e', ECHO_SOURCE, String(ports.echo)], /echo ready/);
}

const ECHO_SOURCE = `
const socket = require('node:dgram').createSocket('udp4');
socket.on('message', (msg, rinfo) => { msg[2] |= 0x80; socket.send(msg, rinfo.port, rinfo.address); });
socket.bind(Number(process.argv[1]), '127.0.0.1', () => console.log('echo ready'));
`;

interface PerfResult {
  qps: number;
  lost: number;
  avgLatencyMs: number;
  maxLatencyMs: number;
}

function dnsperf(port: number, file: string, seconds: number): PerfResult {
  const out = execSync(`taskset -c ${LOAD_CPU} dnsperf -s 127.0.0.1 -p ${port} -d ${file} -l ${seconds} -c 8 -q 500 -t 2`, { encoding: 'utf8' });
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? Number.NaN);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxLatencyMs: num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  execSync('npm run build', { stdio: 'ignore' });
  const domains = coreDomains();
  await startUpstream();
  await startServers(domains);
  const hits = Array.from({ length: 100 }, (_, i) => `host${i}.bench.test A`);
  const blocked = Array.from({ length: 10_000 }, (_, i) => `n${i}.${domains[i % domains.length]} A`);
  const mixed: string[] = [];
  for (let i = 0; i < 100_000; i++) {
    const r = i % 10;
    mixed.push(r < 7 ? hits[i % hits.length]! : r < 9 ? blocked[i % blocked.length]! : `miss${i}.bench.test A`);
  }
  const files = { 'cache-hit': hits, blocked, mixed };
  for (const [name, lines] of Object.entries(files)) writeFileSync(join(dir, `${name}.txt`), `${lines.join('\n')}\n`);

  const servers = { portcullis: ports.portcullis, dnsmasq: ports.dnsmasq, unbound: ports.unbound, 'node-echo': ports.echo } as const;
  for (const port of Object.values(servers)) dnsperf(port, join(dir, 'cache-hit.txt'), 2); // warm caches
  const results: Record<string, Record<string, PerfResult[]>> = {};
  for (let run = 0; run < RUNS; run++) {
    for (const workload of Object.keys(files)) {
      // Unique miss names per run so "misses" stay misses.
      if (workload === 'mixed') writeFileSync(join(dir, 'mixed.txt'), `${mixed.map((l) => l.replace(/^miss(\d+)/, `miss$1r${run}`)).join('\n')}\n`);
      for (const [server, port] of Object.entries(servers)) {
        ((results[workload] ??= {})[server] ??= []).push(dnsperf(port, join(dir, `${workload}.txt`), DURATION));
      }
    }
  }
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
  console.log(`portcullis DNS bench — node ${process.version}, ${cpus()[0]?.model ?? 'cpu'}, commit ${commit}; servers on CPU ${SERVER_CPU}, dnsperf and upstream on CPU ${LOAD_CPU}; ${RUNS} runs of ${DURATION}s, median`);
  console.log(`${'workload'.padEnd(10)} ${'metric'.padEnd(14)} ${'portcullis'.padStart(11)} ${'dnsmasq'.padStart(11)} ${'unbound'.padStart(11)} ${'vs dnsmasq'.padStart(11)} ${'vs unbound'.padStart(11)} ${'node-echo'.padStart(11)} ${'vs echo'.padStart(9)}`);
  const table: Record<string, Record<string, Record<string, number>>> = {};
  for (const [workload, byServer] of Object.entries(results)) {
    for (const metric of ['qps', 'lost', 'avgLatencyMs', 'maxLatencyMs'] as const) {
      const m = (server: string): number => median(byServer[server]!.map((r) => r[metric]));
      const [p, d, u, e] = [m('portcullis'), m('dnsmasq'), m('unbound'), m('node-echo')];
      ((table[workload] ??= {})[metric] = { portcullis: p, dnsmasq: d, unbound: u, nodeEcho: e });
      const ratio = (a: number, b: number): string => (b === 0 ? '-' : (a / b).toFixed(2));
      const fmt = (v: number): string => v.toFixed(metric === 'qps' || metric === 'lost' ? 0 : 3);
      console.log(`${workload.padEnd(10)} ${metric.padEnd(14)} ${fmt(p).padStart(11)} ${fmt(d).padStart(11)} ${fmt(u).padStart(11)} ${ratio(p, d).padStart(11)} ${ratio(p, u).padStart(11)} ${fmt(e).padStart(11)} ${ratio(p, e).padStart(9)}`);
    }
  }
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/dns-${new Date().toISOString().slice(0, 10)}.json`, import.meta.url), `${JSON.stringify({ date: new Date().toISOString(), node: process.version, commit, durationSec: DURATION, runs: RUNS, table }, null, 2)}\n`);
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGTERM');
}
