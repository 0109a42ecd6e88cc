/**
 * TLS proxy benchmark: portcullis side by side with HAProxy (tcp mode, req.ssl_sni routing) and
 * nginx stream (ssl_preread + map), all three in front of the same local TLS backend (a separate
 * nginx instance serving HTTPS). Two metrics, median of RUNS runs:
 *   - new TLS connections/s: full handshake (TLS 1.3, X25519, ECDSA P-256, no resumption) and a
 *     small GET on each connection, CONCURRENCY connections in flight;
 *   - single-connection bulk Gbit/s: one TLS connection downloading BULK_MB MiB (curl);
 *   - server closes first: h2load --h1, CLOSE_REQUESTS requests over 4 connections at a time,
 *     against a backend that closes after every response (nginx keepalive_timeout 0). Every
 *     request must succeed through every proxy, and portcullis must be left holding nothing.
 * Besides the measured rates it reports the proxy's own CPU per unit of work (read from
 * /proc/<pid>/stat), because on a 2-core machine the load generator and the backend share one
 * core and often cap the measured rate before the proxy is saturated.
 *
 *   npm run bench:proxy      (RUNS=5 CONN_SECONDS=10 CONCURRENCY=64 BULK_MB=1024)
 *   PROXY_PROFILE_DIR=/tmp/prof npm run bench:proxy    (portcullis under --cpu-prof)
 *
 * Pinning (2 cores): each proxy under test alone on core 0; backend and load generator on core
 * 1 (this driver too). The same for the three proxies. Everything binds 127.0.0.1 only.
 *
 * Target (issue 5 "Speed"): >= 0.8x HAProxy on both metrics.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createSecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';

const RUNS = Number(process.env.RUNS ?? 3);
const CONN_SECONDS = Number(process.env.CONN_SECONDS ?? 10);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 64);
const BULK_MB = Number(process.env.BULK_MB ?? 1024);
const CLOSE_REQUESTS = Number(process.env.CLOSE_REQUESTS ?? 2000);
const WARM_SECONDS = 3;
const WARM_MB = 128;
const PROFILE_DIR = process.env.PROXY_PROFILE_DIR;
const SNI = 'bench.test';
/** Served by the same backend, which closes after every response to it. */
const CLOSE_SNI = `close.${SNI}`;
const TARGET_RATIO = 0.8;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
/** How long any one child step may take before it is killed (bounded durations). */
const STEP_TIMEOUT_MS = 180_000;

// ---------------------------------------------------------------------------------------------
// Load generator (runs as a child of this file, pinned with the backend): CONCURRENCY workers
// each loop tls.connect -> GET /small -> read to the server's close, for `seconds`.

interface ConnResult {
  done: number;
  errors: number;
  seconds: number;
  rate: number;
  generatorCpuSeconds: number;
}

async function connGenerator(port: number, concurrency: number, seconds: number): Promise<ConnResult> {
  // One shared context: without it tls.connect builds a context (and loads the root store) per
  // connection, which costs more than the handshake. No session is ever offered: full handshakes.
  const context = createSecureContext({ minVersion: 'TLSv1.3' });
  const request = Buffer.from(`GET /small HTTP/1.1\r\nHost: ${SNI}\r\nConnection: close\r\n\r\n`);
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      let head = '';
      let isFailed = false;
      const socket = tlsConnect({ host: '127.0.0.1', port, servername: SNI, rejectUnauthorized: false, secureContext: context }, () => {
        socket.write(request);
      });
      socket.setTimeout(5_000, () => {
        isFailed = true;
        socket.destroy();
      });
      socket.on('data', (chunk: Buffer) => {
        if (head.length < 12) head += chunk.toString('latin1', 0, 12);
      });
      socket.on('end', () => socket.destroy());
      socket.on('error', () => {
        isFailed = true;
        socket.destroy();
      });
      socket.on('close', () => {
        if (!isFailed && head.startsWith('HTTP/1.1 200')) done++;
        else errors++;
        resolve();
      });
    });
  const worker = async (): Promise<void> => {
    while (performance.now() < end) await one();
  };
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return { done, errors, seconds: elapsed, rate: done / elapsed, generatorCpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

// ---------------------------------------------------------------------------------------------
// Process plumbing.

interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  log: string[];
  exited: boolean;
}

const children = new Set<Child>();
let workDir = '';
const hasTaskset = ((): boolean => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const PROXY_CORE = '0';
const LOAD_CORE = cpus().length >= 2 ? '1' : '0';

function pinned(core: string, command: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', core, command, ...args]] : [command, args];
}

function keepTail(log: string[], chunk: Buffer): void {
  log.push(chunk.toString('utf8'));
  while (log.length > 200) log.shift();
}

function startChild(name: string, core: string, command: string, args: string[], onStdout?: (line: string) => void): Child {
  const [cmd, argv] = pinned(core, command, args);
  const proc = spawn(cmd, argv, { cwd: workDir, stdio: ['ignore', 'pipe', 'pipe'] });
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const child: Child = { name, proc, pid: proc.pid, log: [], exited: false };
  children.add(child);
  let pending = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    keepTail(child.log, chunk);
    if (onStdout === undefined) return;
    pending += chunk.toString('utf8');
    let nl = pending.indexOf('\n');
    while (nl !== -1) {
      onStdout(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
  });
  proc.stderr.on('data', (chunk: Buffer) => keepTail(child.log, chunk));
  proc.on('exit', () => {
    child.exited = true;
  });
  proc.on('error', (e) => {
    child.exited = true;
    child.log.push(`spawn error: ${e.message}`);
  });
  return child;
}

async function stopChild(child: Child): Promise<void> {
  if (child.exited) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.proc.once('exit', () => resolve()));
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), 12_000);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

function killAllNow(): void {
  for (const child of children) if (!child.exited) child.proc.kill('SIGKILL');
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
}

function tail(child: Child): string {
  return child.log.join('').split('\n').slice(-15).join('\n');
}

/** Runs a command to completion (bounded), returning stdout. */
function run(command: string, args: string[], core: string, timeoutMs = STEP_TIMEOUT_MS): Promise<string> {
  const [cmd, argv] = pinned(core, command, args);
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    proc.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} exited ${code ?? signal}: ${err.slice(-2000)}`));
    });
  });
}

async function freePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const p = typeof address === 'object' && address !== null ? address.port : 0;
        server.close(() => resolve(p));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}

async function waitForPort(port: number, child: Child, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exited) throw new Error(`${child.name} exited before listening:\n${tail(child)}`);
    const isOpen = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (isOpen) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${child.name} did not listen on ${port} within ${timeoutMs} ms:\n${tail(child)}`);
}

let clockTicks = 100;
/** CPU time of a process (all its threads) in seconds: user space, and user + kernel. */
function cpuTimes(pid: number | null): { user: number; total: number } {
  if (pid === null) return { user: 0, total: 0 };
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]) / clockTicks;
  return { user, total: user + Number(fields[12]) / clockTicks };
}

// ---------------------------------------------------------------------------------------------
// Configurations.

function backendConf(dir: string, port: number): string {
  return `worker_processes 1;
daemon off;
master_process off;
pid ${dir}/backend.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp;
  scgi_temp_path ${dir}/tmp;
  default_type application/octet-stream;
  sendfile off;
  output_buffers 4 256k;
  server {
    listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    root ${dir}/www;
    location = /small { return 200 "ok\\n"; }
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name ${CLOSE_SNI};
    keepalive_timeout 0;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.3;
    location = /small { return 200 "ok\\n"; }
  }
}
`;
}

function haproxyConf(port: number, backendPort: number): string {
  return `global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:${port}
  tcp-request inspect-delay 5s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend b if { req.ssl_sni -i ${SNI} ${CLOSE_SNI} }
backend b
  server s1 127.0.0.1:${backendPort}
`;
}

function nginxStreamConf(dir: string, port: number, backendPort: number): string {
  return `load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
master_process off;
pid ${dir}/stream.pid;
error_log stderr error;
events { worker_connections 8000; }
stream {
  map $ssl_preread_server_name $upstream {
    ${SNI} 127.0.0.1:${backendPort};
    ${CLOSE_SNI} 127.0.0.1:${backendPort};
    default 127.0.0.1:1;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    ssl_preread on;
    proxy_connect_timeout 5s;
    proxy_timeout 60s;
    proxy_pass $upstream;
  }
}
`;
}

function portcullisConf(dir: string, ports: { tls: number; http: number; dns: number; dnsUpstream: number; admin: number }, backendPort: number): string {
  return JSON.stringify(
    {
      dns: { listen: `127.0.0.1:${ports.dns}`, upstreams: [`127.0.0.1:${ports.dnsUpstream}`] },
      proxy: {
        tls: { listen: `127.0.0.1:${ports.tls}`, upstreamPort: backendPort },
        http: { listen: `127.0.0.1:${ports.http}`, upstreamPort: backendPort },
        hosts: { [SNI]: '127.0.0.1', [CLOSE_SNI]: '127.0.0.1' },
        allowedUpstreamNetworks: ['127.0.0.0/8'],
      },
      admin: { listen: `127.0.0.1:${ports.admin}` },
      store: { path: join(dir, 'store') },
      log: { level: 'info' },
    },
    null,
    2,
  );
}

// ---------------------------------------------------------------------------------------------
// Measurements.

type Target = 'portcullis' | 'haproxy' | 'nginx' | 'direct';
const PROXIES: Target[] = ['portcullis', 'haproxy', 'nginx'];

interface Measure {
  connPerSec: number;
  connErrors: number;
  connProxyCpuUs: number;
  connProxyUserUs: number;
  connProxyBusy: number;
  connBackendBusy: number;
  connGeneratorBusy: number;
  bulkGbps: number;
  bulkProxyCpuSecPerGiB: number;
  bulkProxyUserSecPerGiB: number;
  bulkProxyBusy: number;
  bulkBackendBusy: number;
}

async function measureConn(port: number, proxyPid: number | null, backendPid: number, seconds: number): Promise<Pick<Measure, 'connPerSec' | 'connErrors' | 'connProxyCpuUs' | 'connProxyUserUs' | 'connProxyBusy' | 'connBackendBusy' | 'connGeneratorBusy'>> {
  const proxyBefore = cpuTimes(proxyPid);
  const backendBefore = cpuTimes(backendPid).total;
  const out = await run(process.execPath, [...process.execArgv, SELF, '--conn-generator', String(port), String(CONCURRENCY), String(seconds)], LOAD_CORE, (seconds + 60) * 1000);
  const proxyAfter = cpuTimes(proxyPid);
  const proxyCpu = proxyAfter.total - proxyBefore.total;
  const backendCpu = cpuTimes(backendPid).total - backendBefore;
  const result = JSON.parse(out.trim().split('\n').at(-1)!) as ConnResult;
  if (result.done === 0) throw new Error(`no connection completed through port ${port} (${result.errors} errors)`);
  return {
    connPerSec: result.rate,
    connErrors: result.errors,
    connProxyCpuUs: (proxyCpu / result.done) * 1e6,
    connProxyUserUs: ((proxyAfter.user - proxyBefore.user) / result.done) * 1e6,
    connProxyBusy: proxyCpu / result.seconds,
    connBackendBusy: backendCpu / result.seconds,
    connGeneratorBusy: result.generatorCpuSeconds / result.seconds,
  };
}

async function measureBulk(port: number, proxyPid: number | null, backendPid: number, path: string, bytes: number): Promise<Pick<Measure, 'bulkGbps' | 'bulkProxyCpuSecPerGiB' | 'bulkProxyUserSecPerGiB' | 'bulkProxyBusy' | 'bulkBackendBusy'>> {
  const before = cpuTimes(proxyPid);
  const backendBefore = cpuTimes(backendPid).total;
  const out = await run(
    'curl',
    ['-sS', '--http1.1', '--no-sessionid', '--cacert', join(workDir, 'cert.pem'), '--resolve', `${SNI}:${port}:127.0.0.1`, '--max-time', '120', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_starttransfer} %{time_total}', `https://${SNI}:${port}${path}`],
    LOAD_CORE,
  );
  const after = cpuTimes(proxyPid);
  const cpu = after.total - before.total;
  const backendCpu = cpuTimes(backendPid).total - backendBefore;
  const [code, size, startTransfer, total] = out.trim().split(' ');
  if (code !== '200' || Number(size) !== bytes) throw new Error(`bulk through ${port}: HTTP ${code}, ${size} of ${bytes} bytes`);
  const seconds = Number(total) - Number(startTransfer);
  const gib = bytes / 2 ** 30;
  return { bulkGbps: (bytes * 8) / seconds / 1e9, bulkProxyCpuSecPerGiB: cpu / gib, bulkProxyUserSecPerGiB: (after.user - before.user) / gib, bulkProxyBusy: cpu / seconds, bulkBackendBusy: backendCpu / seconds };
}

interface CloseFirst {
  requestsPerSec: number;
  succeeded: number;
  failed: number;
}

/** h2load through `port` against the backend that closes after every response. */
async function measureCloseFirst(port: number): Promise<CloseFirst> {
  const out = await run('h2load', ['--h1', '-n', String(CLOSE_REQUESTS), '-c', '4', `--connect-to=127.0.0.1:${port}`, `https://${CLOSE_SNI}/small`], LOAD_CORE);
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  const rate = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
  if (counts === null || rate === null) throw new Error(`h2load output not understood:\n${out}`);
  return { requestsPerSec: Number(rate[1]), succeeded: Number(counts[4]), failed: Number(counts[1]) - Number(counts[4]) };
}

/** Proxy connections portcullis counts open now (its admin /metrics). */
async function portcullisActive(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('portcullis_proxy_active_connections{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty === '' ? commit : `${commit}+dirty`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  // The driver spends the runs waiting; keep it off the proxies' core.
  if (hasTaskset) execFileSync('taskset', ['-a', '-pc', LOAD_CORE, String(process.pid)], { stdio: 'ignore' });
  try {
    clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    /* keep 100 */
  }
  workDir = mkdtempSync(join(tmpdir(), 'portcullis-proxy-bench-'));
  const dir = workDir;
  for (const sub of ['tmp', 'www', 'store']) mkdirSync(join(dir, sub));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${SNI}`, '-addext', `subjectAltName=DNS:${SNI},DNS:${CLOSE_SNI}`], { stdio: 'ignore' });
  // Sparse files: the backend reads zero pages from the page cache, not the disk.
  const bulkBytes = BULK_MB * 2 ** 20;
  for (const [name, size] of [['bulk', bulkBytes], ['warm', WARM_MB * 2 ** 20]] as const) {
    const fd = openSync(join(dir, 'www', name), 'w');
    ftruncateSync(fd, size);
    closeSync(fd);
  }

  const taken = new Set<number>();
  const ports = {
    backend: await freePort(taken),
    haproxy: await freePort(taken),
    nginx: await freePort(taken),
    tls: await freePort(taken),
    http: await freePort(taken),
    dns: await freePort(taken),
    dnsUpstream: await freePort(taken),
    admin: await freePort(taken),
  };
  writeFileSync(join(dir, 'backend.conf'), backendConf(dir, ports.backend));
  writeFileSync(join(dir, 'haproxy.cfg'), haproxyConf(ports.haproxy, ports.backend));
  writeFileSync(join(dir, 'nginx-stream.conf'), nginxStreamConf(dir, ports.nginx, ports.backend));
  writeFileSync(join(dir, 'portcullis.json'), portcullisConf(dir, ports, ports.backend));

  const backend = startChild('backend nginx', LOAD_CORE, '/usr/sbin/nginx', ['-p', dir, '-e', 'stderr', '-c', join(dir, 'backend.conf')]);
  await waitForPort(ports.backend, backend);
  const haproxy = startChild('haproxy', PROXY_CORE, '/usr/sbin/haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]);
  await waitForPort(ports.haproxy, haproxy);
  const nginx = startChild('nginx stream', PROXY_CORE, '/usr/sbin/nginx', ['-p', dir, '-e', 'stderr', '-c', join(dir, 'nginx-stream.conf')]);
  await waitForPort(ports.nginx, nginx);
  let portcullisPort = 0;
  const profileArgs = PROFILE_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR];
  const portcullis = startChild('portcullis', PROXY_CORE, process.execPath, [...profileArgs, join(ROOT, 'dist/cli.js'), 'start', '--config', join(dir, 'portcullis.json')], (line) => {
    try {
      const entry = JSON.parse(line) as { msg?: string; tls?: { port?: number } };
      if (entry.msg === 'proxy listening' && typeof entry.tls?.port === 'number') portcullisPort = entry.tls.port;
    } catch {
      /* not a log line */
    }
  });
  const readyBy = Date.now() + 30_000;
  while (portcullisPort === 0) {
    if (portcullis.exited) throw new Error(`portcullis exited before listening:\n${tail(portcullis)}`);
    if (Date.now() > readyBy) throw new Error(`portcullis did not log "proxy listening" within 30 s:\n${tail(portcullis)}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const targets: Record<Target, { port: number; pid: number | null; child: Child | null }> = {
    portcullis: { port: portcullisPort, pid: portcullis.pid, child: portcullis },
    haproxy: { port: ports.haproxy, pid: haproxy.pid, child: haproxy },
    nginx: { port: ports.nginx, pid: nginx.pid, child: nginx },
    direct: { port: ports.backend, pid: null, child: null },
  };
  const loadBefore = loadavg();

  // Warm-up: JIT, caches, a first bulk transfer through each.
  for (const target of ['direct', ...PROXIES] as Target[]) {
    const t = targets[target];
    await measureConn(t.port, t.pid, backend.pid, WARM_SECONDS);
    await measureBulk(t.port, t.pid, backend.pid, '/warm', WARM_MB * 2 ** 20);
  }

  const runs: Record<Target, Measure[]> = { portcullis: [], haproxy: [], nginx: [], direct: [] };
  for (let r = 0; r < RUNS; r++) {
    // Rotate the order each run so drift on the host does not always favour the same proxy.
    const order: Target[] = ['direct', ...PROXIES.slice(r % 3), ...PROXIES.slice(0, r % 3)];
    for (const target of order) {
      const t = targets[target];
      if (t.child?.exited === true) throw new Error(`${t.child.name} exited during the bench:\n${tail(t.child)}`);
      const conn = await measureConn(t.port, t.pid, backend.pid, CONN_SECONDS);
      const bulk = await measureBulk(t.port, t.pid, backend.pid, '/bulk', bulkBytes);
      runs[target].push({ ...conn, ...bulk });
      process.stderr.write(`run ${r + 1}/${RUNS} ${target.padEnd(10)} ${conn.connPerSec.toFixed(0)} conn/s (${conn.connErrors} errors), ${bulk.bulkGbps.toFixed(2)} Gbit/s\n`);
    }
  }
  const closeFirst: Partial<Record<Target, CloseFirst>> = {};
  for (const target of PROXIES) {
    closeFirst[target] = await measureCloseFirst(targets[target].port);
    process.stderr.write(`server closes first ${target.padEnd(10)} ${closeFirst[target].requestsPerSec.toFixed(0)} req/s, ${closeFirst[target].failed} failed\n`);
  }
  // Every connection of that run ended: portcullis must hold none of them (the lock-out a
  // server closing first once caused).
  let portcullisLeft = await portcullisActive(ports.admin);
  for (let i = 0; i < 40 && portcullisLeft > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    portcullisLeft = await portcullisActive(ports.admin);
  }
  const loadAfter = loadavg();

  const med = (target: Target, key: keyof Measure): number => median(runs[target].map((m) => m[key]));
  const medianOf = (t: Target): Measure => ({
    connPerSec: med(t, 'connPerSec'),
    connErrors: med(t, 'connErrors'),
    connProxyCpuUs: med(t, 'connProxyCpuUs'),
    connProxyUserUs: med(t, 'connProxyUserUs'),
    connProxyBusy: med(t, 'connProxyBusy'),
    connBackendBusy: med(t, 'connBackendBusy'),
    connGeneratorBusy: med(t, 'connGeneratorBusy'),
    bulkGbps: med(t, 'bulkGbps'),
    bulkProxyCpuSecPerGiB: med(t, 'bulkProxyCpuSecPerGiB'),
    bulkProxyUserSecPerGiB: med(t, 'bulkProxyUserSecPerGiB'),
    bulkProxyBusy: med(t, 'bulkProxyBusy'),
    bulkBackendBusy: med(t, 'bulkBackendBusy'),
  });
  const medians: Record<Target, Measure> = { portcullis: medianOf('portcullis'), haproxy: medianOf('haproxy'), nginx: medianOf('nginx'), direct: medianOf('direct') };

  interface Row {
    metric: string;
    values: Record<'portcullis' | 'haproxy' | 'nginx', number>;
    digits: number;
    /** Higher is better: ratio printed as portcullis / peer. */
    isRatio: boolean;
  }
  const row = (metric: string, values: (t: Target) => number, digits: number, isRatio = true): Row => ({
    metric,
    values: { portcullis: values('portcullis'), haproxy: values('haproxy'), nginx: values('nginx') },
    digits,
    isRatio,
  });
  const rows: Row[] = [
    row('new TLS conn/s (handshake + GET)', (t) => medians[t].connPerSec, 0),
    row('  conn per proxy CPU-second', (t) => 1e6 / medians[t].connProxyCpuUs, 0),
    row('  proxy CPU µs per connection', (t) => medians[t].connProxyCpuUs, 0, false),
    row('    of which user space (µs)', (t) => medians[t].connProxyUserUs, 0, false),
    row('  proxy core busy, conn test (%)', (t) => medians[t].connProxyBusy * 100, 0, false),
    row('  backend busy, conn test (%)', (t) => medians[t].connBackendBusy * 100, 0, false),
    row('  load-generator busy (%)', (t) => medians[t].connGeneratorBusy * 100, 0, false),
    row('  failed connections (sum)', (t) => runs[t].reduce((n, m) => n + m.connErrors, 0), 0, false),
    row('single-connection bulk Gbit/s', (t) => medians[t].bulkGbps, 2),
    row('  proxy CPU seconds per GiB', (t) => medians[t].bulkProxyCpuSecPerGiB, 2, false),
    row('    of which user space (s)', (t) => medians[t].bulkProxyUserSecPerGiB, 2, false),
    row('  Gbit per proxy CPU-second', (t) => 8.589934592 / medians[t].bulkProxyCpuSecPerGiB, 2),
    row('  proxy core busy, bulk (%)', (t) => medians[t].bulkProxyBusy * 100, 0, false),
    row('  backend busy, bulk (%)', (t) => medians[t].bulkBackendBusy * 100, 0, false),
  ];
  const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');

  const commit = gitCommit();
  const cpu = cpus()[0]?.model ?? 'unknown';
  const date = new Date().toISOString();
  const connRatio = medians.portcullis.connPerSec / medians.haproxy.connPerSec;
  const bulkRatio = medians.portcullis.bulkGbps / medians.haproxy.bulkGbps;
  const connCapRatio = medians.haproxy.connProxyCpuUs / medians.portcullis.connProxyCpuUs;
  const bulkCapRatio = medians.haproxy.bulkProxyCpuSecPerGiB / medians.portcullis.bulkProxyCpuSecPerGiB;
  const verdict = (x: number): string => `${x.toFixed(2)}x ${x >= TARGET_RATIO ? 'meets' : 'BELOW'}`;

  const pinning = hasTaskset
    ? `proxy under test alone on core ${PROXY_CORE}; backend nginx + load generator + this driver on core ${LOAD_CORE} (same for all three)`
    : 'taskset not found: nothing pinned';
  const lines: string[] = [];
  lines.push(`portcullis proxy bench — median of ${RUNS} runs, node ${process.version}, ${cpu} x${cpus().length}, commit ${commit}`);
  lines.push(`pinning: ${pinning}; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' ')} after`);
  lines.push(`conn test: ${CONCURRENCY} concurrent node:tls clients, ${CONN_SECONDS} s, TLS 1.3 X25519 + ECDSA P-256, no resumption, GET /small, Connection: close`);
  lines.push(`bulk test: curl, one TLS connection, ${BULK_MB} MiB, time from first byte to last`);
  lines.push('');
  lines.push(`${'metric'.padEnd(36)} ${'portcullis'.padStart(11)} ${'haproxy'.padStart(11)} ${'nginx'.padStart(11)} ${'pc/haproxy'.padStart(11)} ${'pc/nginx'.padStart(11)}`);
  for (const r of rows) {
    const v = r.values;
    const fmt = (x: number): string => x.toFixed(r.digits).padStart(11);
    const rp = r.isRatio ? ratio(v.portcullis, v.haproxy) : '';
    const rn = r.isRatio ? ratio(v.portcullis, v.nginx) : '';
    lines.push(`${r.metric.padEnd(36)} ${fmt(v.portcullis)} ${fmt(v.haproxy)} ${fmt(v.nginx)} ${rp.padStart(11)} ${rn.padStart(11)}`);
  }
  lines.push('');
  lines.push(`reference, backend direct (no proxy, all on core ${LOAD_CORE}): ${medians.direct.connPerSec.toFixed(0)} conn/s (about the ceiling core ${LOAD_CORE} allows), ${medians.direct.bulkGbps.toFixed(2)} Gbit/s (not a strict ceiling for bulk: through a proxy part of the loopback TCP work moves to core ${PROXY_CORE})`);
  lines.push(`note: with 2 cores the backend shares a core with the load generator; when the proxy core is not busy near 100% the measured rate is bounded by core ${LOAD_CORE}, not by the proxy. The "per proxy CPU-second" rows compare the proxies' own cost (kernel TCP work included) and are the fairer capacity ratio then. Other load on the host shows in the load average above and widens the spread between runs (see the JSON).`);
  lines.push(`target >= ${TARGET_RATIO}x HAProxy: conn/s ${verdict(connRatio)} (per CPU ${verdict(connCapRatio)}); bulk Gbit/s ${verdict(bulkRatio)} (per CPU ${verdict(bulkCapRatio)})`);
  const cf = (t: Target): CloseFirst => closeFirst[t]!;
  lines.push(
    `server closes first (h2load --h1 -n ${CLOSE_REQUESTS} -c 4, backend keepalive_timeout 0): portcullis ${cf('portcullis').requestsPerSec.toFixed(0)} req/s ${cf('portcullis').failed} failed, haproxy ${cf('haproxy').requestsPerSec.toFixed(0)} req/s ${cf('haproxy').failed} failed, nginx ${cf('nginx').requestsPerSec.toFixed(0)} req/s ${cf('nginx').failed} failed (${ratio(cf('portcullis').requestsPerSec, cf('haproxy').requestsPerSec)} haproxy); portcullis connections left open after it: ${portcullisLeft}`,
  );
  console.log(lines.join('\n'));

  const result = {
    date,
    node: process.version,
    cpu,
    cores: cpus().length,
    commit,
    pinning,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAfter,
    settings: { runs: RUNS, connSeconds: CONN_SECONDS, concurrency: CONCURRENCY, bulkMiB: BULK_MB, tls: 'TLSv1.3 X25519 ECDSA-P256, no resumption' },
    versions: {
      haproxy: execFileSync('/usr/sbin/haproxy', ['-v'], { encoding: 'utf8' }).split('\n')[0],
      nginx: spawnSync('/usr/sbin/nginx', ['-v'], { encoding: 'utf8' }).stderr.trim(),
    },
    medians,
    closeFirst: { requests: CLOSE_REQUESTS, results: closeFirst, portcullisLeftOpen: portcullisLeft },
    ratios: { connPerSecVsHaproxy: connRatio, bulkGbpsVsHaproxy: bulkRatio, connPerCpuVsHaproxy: connCapRatio, bulkPerCpuVsHaproxy: bulkCapRatio, target: TARGET_RATIO },
    runs,
  };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/proxy-${date.slice(0, 10)}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  if (cf('portcullis').failed > 0 || portcullisLeft > 0) {
    throw new Error(`server-closes-first run: ${cf('portcullis').failed} requests failed through portcullis, ${portcullisLeft} connections left open`);
  }
}

if (process.argv[2] === '--conn-generator') {
  const [port, concurrency, seconds] = process.argv.slice(3).map(Number);
  console.log(JSON.stringify(await connGenerator(port!, concurrency!, seconds!)));
} else {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAllNow();
      process.exit(130);
    });
  }
  process.once('exit', killAllNow);
  try {
    await main();
  } finally {
    await Promise.all([...children].map(stopChild));
    if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
  }
}
