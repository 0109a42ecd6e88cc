/**
 * Soak: the real gateway under mixed, real-shaped load for a long while, watched every few
 * seconds. Not part of `npm test`; run it before a release and after any change to how
 * connections live and die.
 *
 *   npm run soak                      (10 minutes)
 *   SOAK_SECONDS=120 npm run soak     (shorter)
 *
 * Load, all at once, through every explicit listener to real nginx backends (one closes after
 * every response, one keeps connections alive; TLS 1.2 and 1.3), names resolved through the
 * gateway's own DNS:
 *   - h2load --h1 through the TLS listener to the server that closes first (short connections)
 *   - h2load --h1 through the HTTP listener, keep-alive and close-after-response
 *   - long-lived TLS 1.2 keep-alive connections, a request every second or two, reopened after
 *     20-60 s (apps' long connections)
 *   - CONNECT tunnels with TLS 1.3 inside downloading 1 MiB
 *   - blocked names on both listeners (alert, 451), and DNS queries (allowed, blocked, unknown)
 *   - a newer signed catalog bundle published 12 s after the last one took effect (policy.catalog,
 *     refresh 5 s): each adds a name the upstream answers, which DNS must block within 8 s (every
 *     swap re-judges open connections too)
 *
 * Every SAMPLE_SECONDS it samples the gateway's RSS, heap, descriptors, event-loop delay (p99)
 * and active connection gauges into bench/results/soak-<date>.json and prints a table. It fails
 * (exit 1) when, after warm-up, RSS grows more than 10%; when descriptors or gauges are not back
 * to their baseline at the end; when an allowed request fails against a live backend; or when
 * the gateway logs at error level.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { createServer as createHttpsServer } from 'node:https';
import { loadBundledRelease } from '../src/catalog/index.js';
import { ed25519Keys, signedBundle, withDomain } from '../test/support/catalog-bundles.js';
import { startFakeUpstream, type FakeUpstream } from '../test/support/fake-upstream.js';
import { freePort, resolveA, waitForPort } from '../test/support/gateway-process.js';
import { makeTestPki } from '../test/support/test-pki.js';
import { buildQuery, decode } from '../test/support/dns-message.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SAMPLE_SECONDS = Number(process.env.SOAK_SAMPLE_SECONDS ?? 5);
/** Samples before this are warm-up (JIT, caches, V8 sizing its heap); RSS growth counts from here. */
const WARMUP_SECONDS = Math.min(60, Math.max(SAMPLE_SECONDS * 2, SECONDS / 5));
const RSS_GROWTH_LIMIT = 0.1;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLOSE = 'close.soak.test';
const KEEP = 'keep.soak.test';
const BLOCKED = 'talk-pilsner.kakao.com';
const LARGE_BYTES = 1 << 20;

interface Counts {
  ok: number;
  failed: number;
  blocked: number;
}

const counts: Record<string, Counts> = {};
const failures: string[] = [];
function count(worker: string, outcome: keyof Counts, detail?: string): void {
  counts[worker] ??= { ok: 0, failed: 0, blocked: 0 };
  counts[worker][outcome]++;
  if (outcome === 'failed' && failures.length < 50) failures.push(`${worker}: ${detail ?? 'failed'}`);
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    child.on('close', () => resolve(out));
  });
}

// ---------------------------------------------------------------------------------------------
// Workers: each loops until `until`, counting what it saw.

async function h2loadLoop(worker: string, until: number, args: string[]): Promise<void> {
  while (Date.now() < until) {
    const out = await run('h2load', ['--h1', ...args]);
    const m = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(out);
    if (m === null) count(worker, 'failed', `h2load output: ${out.slice(0, 300)}`);
    else {
      const total = Number(m[1]);
      const succeeded = Number(m[2]);
      counts[worker] ??= { ok: 0, failed: 0, blocked: 0 };
      counts[worker].ok += succeeded;
      for (let i = succeeded; i < total; i++) count(worker, 'failed', 'h2load request failed');
    }
    await sleep(1_000);
  }
}

/** One GET on an open TLS socket; resolves with the body once Content-Length bytes are in. */
function requestOn(socket: import('node:tls').TLSSocket, host: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = buffered.subarray(0, headEnd).toString('latin1');
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1);
      if (buffered.length - headEnd - 4 < length) return;
      cleanup();
      if (!head.startsWith('HTTP/1.1 200')) reject(new Error(head.split('\r\n')[0]));
      else resolve(length);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('closed before the response'));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

function openTls(options: ConnectionOptions): Promise<import('node:tls').TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ rejectUnauthorized: false, ...options });
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function longLivedLoop(worker: string, until: number, tlsPort: number): Promise<void> {
  while (Date.now() < until) {
    const lifeMs = 20_000 + Math.random() * 40_000;
    const opened = Date.now();
    try {
      const socket = await openTls({ host: '127.0.0.1', port: tlsPort, servername: KEEP, maxVersion: 'TLSv1.2' });
      socket.on('error', () => undefined);
      while (Date.now() - opened < lifeMs && Date.now() < until) {
        await requestOn(socket, KEEP, '/small');
        count(worker, 'ok');
        await sleep(1_000 + Math.random() * 1_000);
      }
      socket.end();
    } catch (e: unknown) {
      count(worker, 'failed', e instanceof Error ? e.message : String(e));
      await sleep(1_000);
    }
  }
}

async function connectLoop(worker: string, until: number, httpPort: number, nginxTls: number): Promise<void> {
  while (Date.now() < until) {
    try {
      const raw = connect(httpPort, '127.0.0.1');
      raw.on('error', () => undefined);
      raw.write(`CONNECT ${KEEP}:${nginxTls} HTTP/1.1\r\nHost: ${KEEP}:${nginxTls}\r\n\r\n`);
      const established = await new Promise<string>((resolve) => raw.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1'))));
      if (!established.startsWith('HTTP/1.1 200')) throw new Error(`CONNECT: ${established.split('\r\n')[0]}`);
      const socket = await openTls({ socket: raw, servername: KEEP, minVersion: 'TLSv1.3' });
      socket.on('error', () => undefined);
      const length = await requestOn(socket, KEEP, '/large');
      if (length !== LARGE_BYTES) throw new Error(`CONNECT download: ${length} bytes`);
      socket.end();
      count(worker, 'ok');
    } catch (e: unknown) {
      count(worker, 'failed', e instanceof Error ? e.message : String(e));
    }
    await sleep(1_000);
  }
}

async function blockedLoop(worker: string, until: number, tlsPort: number, httpPort: number): Promise<void> {
  while (Date.now() < until) {
    const tls = await openTls({ host: '127.0.0.1', port: tlsPort, servername: BLOCKED }).then(
      (s) => {
        s.destroy();
        return 'open';
      },
      () => 'refused',
    );
    if (tls === 'refused') count(worker, 'blocked');
    else count(worker, 'failed', `TLS to ${BLOCKED} was let through`);
    const status = await new Promise<string>((resolve) => {
      const socket = connect(httpPort, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(text.slice(9, 12)));
      socket.write(`GET / HTTP/1.1\r\nHost: ${BLOCKED}\r\n\r\n`);
    });
    if (status === '451') count(worker, 'blocked');
    else count(worker, 'failed', `HTTP to ${BLOCKED}: ${status}`);
    await sleep(500);
  }
}

/** The catalog source: publishes a newer signed bundle 12 s after the last took effect, each blocking one more name the upstream answers. */
async function catalogLoop(worker: string, until: number, dnsPort: number, catalog: CatalogSource): Promise<void> {
  while (Date.now() + 20_000 < until) {
    await sleep(20_000 - 8_000);
    const name = catalog.publish();
    const published = Date.now();
    let rcode: number | null = null;
    while (Date.now() - published < 8_000 && rcode !== 3) {
      await sleep(200);
      rcode = (await resolveA(dnsPort, name))?.rcode ?? null;
    }
    count(worker, rcode === 3 ? 'ok' : 'failed', `${name}: rcode ${rcode} 8 s after the bundle adding it was published`);
  }
}

interface CatalogSource {
  url: string;
  ca: string;
  publicPem: string;
  /** Publishes the next version; returns the name it adds. */
  publish(): string;
  close(): Promise<void>;
}

async function startCatalogSource(dir: string, upstream: FakeUpstream): Promise<CatalogSource> {
  const pki = await makeTestPki(dir, ['127.0.0.1']);
  const keys = ed25519Keys();
  const bundled = await loadBundledRelease();
  let version = bundled.version;
  let body: string | null = null;
  // Connection: close, so the gateway's downloads leave no socket open between refreshes.
  const server = createHttpsServer({ cert: readFileSync(pki.cert), key: readFileSync(pki.key) }, (req, res) => {
    if (body === null) res.writeHead(404, { connection: 'close' }).end();
    else res.writeHead(200, { connection: 'close', 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}/catalog.bundle`,
    ca: pki.ca,
    publicPem: keys.publicPem,
    publish() {
      version++;
      const name = `churn${version - bundled.version}.soak.test`;
      upstream.records.set(name, [{ type: 'A', value: '198.51.100.7', ttl: 3 }]);
      body = signedBundle(withDomain(bundled.documents, 'line', name), { version, key: keys.privateKey });
      return name;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function dnsLoop(worker: string, until: number, dnsPort: number): Promise<void> {
  const socket = createSocket('udp4');
  const pending = new Map<number, { name: string; timer: NodeJS.Timeout }>();
  socket.on('message', (message) => {
    const reply = decode(message);
    const query = pending.get(reply.id);
    if (query === undefined) return;
    clearTimeout(query.timer);
    pending.delete(reply.id);
    const isBlocked = query.name === BLOCKED;
    const isUnknown = query.name.startsWith('unknown');
    if (isBlocked) count(worker, reply.rcode === 3 ? 'blocked' : 'failed', `${query.name}: rcode ${reply.rcode}`);
    else if (isUnknown) count(worker, reply.rcode === 3 ? 'ok' : 'failed', `${query.name}: rcode ${reply.rcode}`);
    else count(worker, reply.rcode === 0 && reply.answers.length > 0 ? 'ok' : 'failed', `${query.name}: rcode ${reply.rcode}`);
  });
  let id = 1;
  while (Date.now() < until) {
    for (let i = 0; i < 20; i++) {
      const roll = Math.random();
      const name = roll < 0.1 ? BLOCKED : roll < 0.2 ? `unknown${Math.floor(Math.random() * 1_000)}.soak.test` : `www${Math.floor(Math.random() * 200)}.soak.test`;
      id = (id % 65_535) + 1;
      const queryId = id;
      pending.set(queryId, { name, timer: setTimeout(() => {
        pending.delete(queryId);
        count(worker, 'failed', `${name}: no answer`);
      }, 2_000) });
      socket.send(buildQuery({ id: queryId, name }), dnsPort, '127.0.0.1');
    }
    await sleep(100);
  }
  await sleep(2_100);
  socket.close();
}

// ---------------------------------------------------------------------------------------------
// Watching the gateway.

interface Sample {
  t: number;
  rssMiB: number;
  heapMiB: number;
  descriptors: number;
  loopP99Ms: number;
  active: { tls: number; http: number };
  ok: number;
  failed: number;
}

async function metrics(adminPort: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { connection: 'close' } })).text();
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** What each descriptor is (a file path, socket:[inode], anon_inode:…), for telling a leak apart. */
function descriptorTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

async function restingDescriptors(pid: number): Promise<number> {
  let fewest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20; i++) {
    fewest = Math.min(fewest, descriptors(pid));
    await sleep(25);
  }
  return fewest;
}

function totals(): { ok: number; failed: number } {
  let ok = 0;
  let failed = 0;
  for (const c of Object.values(counts)) {
    ok += c.ok + c.blocked;
    failed += c.failed;
  }
  return { ok, failed };
}

async function sample(adminPort: number, pid: number, started: number): Promise<Sample> {
  const text = await metrics(adminPort);
  const { ok, failed } = totals();
  return {
    t: Math.round((Date.now() - started) / 1000),
    rssMiB: rssMiB(pid),
    heapMiB: metric(text, 'portcullis_nodejs_heap_size_used_bytes') / 2 ** 20,
    descriptors: descriptors(pid),
    loopP99Ms: metric(text, 'portcullis_nodejs_eventloop_lag_p99_seconds') * 1000,
    active: {
      tls: metric(text, 'portcullis_proxy_active_connections{listener="tls"}'),
      http: metric(text, 'portcullis_proxy_active_connections{listener="http"}'),
    },
    ok,
    failed,
  };
}

function printRow(s: Sample, previous: Sample | undefined): void {
  const cells = [
    String(s.t).padStart(5),
    s.rssMiB.toFixed(1).padStart(8),
    s.heapMiB.toFixed(1).padStart(8),
    String(s.descriptors).padStart(5),
    s.loopP99Ms.toFixed(1).padStart(8),
    String(s.active.tls).padStart(5),
    String(s.active.http).padStart(5),
    String(s.ok - (previous?.ok ?? 0)).padStart(7),
    String(s.failed - (previous?.failed ?? 0)).padStart(6),
  ];
  console.log(cells.join(' '));
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-soak-'));
  const children: ChildProcess[] = [];
  // nginx gets SIGQUIT (its master takes the workers down with it); SIGKILL would orphan them.
  const stopAll = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill(child.spawnfile === 'nginx' ? 'SIGQUIT' : 'SIGKILL');
  };
  process.once('exit', () => {
    stopAll();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    chmodSync(dir, 0o755);
    mkdirSync(join(dir, 'www'));
    mkdirSync(join(dir, 'tmp'));
    chmodSync(join(dir, 'tmp'), 0o777);
    writeFileSync(join(dir, 'www', 'medium'), Buffer.alloc(64 * 1024, 0x6d));
    writeFileSync(join(dir, 'www', 'large'), Buffer.alloc(LARGE_BYTES, 0x6c));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${KEEP}`, '-addext', `subjectAltName=DNS:${KEEP},DNS:${CLOSE}`], { stdio: 'ignore' });
    const ports = { nginxTls: await freePort(), nginxHttp: await freePort(), dns: await freePort(), admin: await freePort(), tls: await freePort(), http: await freePort() };
    const site = (listen: string, name: string, keepalive: number, tls: boolean): string =>
      [
        '  server {',
        `    listen ${listen}${tls ? ' ssl' : ''};`,
        `    server_name ${name};`,
        ...(tls ? [`    ssl_certificate ${dir}/cert.pem;`, `    ssl_certificate_key ${dir}/key.pem;`, '    ssl_protocols TLSv1.2 TLSv1.3;'] : []),
        `    keepalive_timeout ${keepalive};`,
        '    keepalive_requests 100000;',
        `    root ${dir}/www;`,
        '    location = /small { return 200 "small\\n"; }',
        '  }',
      ].join('\n');
    writeFileSync(
      join(dir, 'nginx.conf'),
      [
        'daemon off;',
        'worker_processes 1;',
        `pid ${dir}/nginx.pid;`,
        'error_log stderr warn;',
        'events { worker_connections 8192; }',
        'http {',
        '  access_log off;',
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/tmp/${t};`),
        site(`127.0.0.1:${ports.nginxTls}`, KEEP, 60, true),
        site(`127.0.0.1:${ports.nginxTls}`, CLOSE, 0, true),
        site(`127.0.0.1:${ports.nginxHttp}`, KEEP, 60, false),
        site(`127.0.0.1:${ports.nginxHttp}`, CLOSE, 0, false),
        '}',
        '',
      ].join('\n'),
    );
    const nginx = spawn('nginx', ['-e', 'stderr', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'inherit' });
    children.push(nginx);
    await waitForPort(ports.nginxTls, 10_000, 'nginx');
    await waitForPort(ports.nginxHttp, 10_000, 'nginx');

    const records: Record<string, { type: 'A'; value: string; ttl: number }[]> = { [KEEP]: [{ type: 'A', value: '127.0.0.1', ttl: 5 }], [CLOSE]: [{ type: 'A', value: '127.0.0.1', ttl: 5 }] };
    for (let i = 0; i < 200; i++) records[`www${i}.soak.test`] = [{ type: 'A', value: `198.51.100.${i % 250}`, ttl: 3 }];
    const upstream = await startFakeUpstream(records);
    const catalog = await startCatalogSource(dir, upstream);
    catalog.publish();

    writeFileSync(
      join(dir, 'portcullis.json'),
      JSON.stringify({
        dns: { listen: `127.0.0.1:${ports.dns}`, upstreams: [upstream.target], rateLimit: { perSecond: 0 } },
        proxy: {
          tls: { listen: `127.0.0.1:${ports.tls}`, upstreamPort: ports.nginxTls },
          http: { listen: `127.0.0.1:${ports.http}`, upstreamPort: ports.nginxHttp },
          allowedUpstreamNetworks: ['127.0.0.0/8'],
        },
        admin: { listen: `127.0.0.1:${ports.admin}` },
        store: { path: join(dir, 'store') },
        policy: { catalog: { url: catalog.url, publicKey: catalog.publicPem, refresh: '5s', ca: catalog.ca } },
      }),
    );
    const gateway = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'start', '--config', join(dir, 'portcullis.json')], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(gateway);
    const errorLines: string[] = [];
    const state = { isStarted: false };
    createInterface({ input: gateway.stdout }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string };
        if (entry.msg === 'portcullis started') state.isStarted = true;
        if ((entry.level ?? 0) >= 50) errorLines.push(line);
      } catch {
        /* not a log line */
      }
    });
    for (let i = 0; i < 300 && !state.isStarted; i++) await sleep(50);
    if (!state.isStarted) throw new Error('the gateway did not start');
    const pid = gateway.pid!;
    // One of everything first, then quiet: what is made once and kept (the DNS upstream sockets,
    // the connection to the metrics scrape) belongs to the baseline, not to a leak.
    const warmUntil = Date.now() + 3_000;
    await Promise.all([
      h2loadLoop('warm-up', warmUntil, ['-n', '20', '-c', '2', `--connect-to=127.0.0.1:${ports.tls}`, `https://${CLOSE}/small`]),
      h2loadLoop('warm-up', warmUntil, ['-n', '20', '-c', '2', `--connect-to=127.0.0.1:${ports.http}`, `http://${KEEP}:${ports.nginxHttp}/small`]),
      connectLoop('warm-up', warmUntil, ports.http, ports.nginxTls),
      blockedLoop('warm-up', warmUntil, ports.tls, ports.http),
      dnsLoop('warm-up', warmUntil, ports.dns),
    ]);
    await metrics(ports.admin);
    await sleep(1_000);
    const baselineDescriptors = await restingDescriptors(pid);
    const baselineTargets = descriptorTargets(pid);

    delete counts['warm-up'];
    console.log(`portcullis soak: ${SECONDS} s, sample every ${SAMPLE_SECONDS} s, warm-up ${WARMUP_SECONDS} s; node ${process.version}, ${cpus()[0]?.model ?? 'cpu'} x${cpus().length}`);
    console.log(`resting descriptors before load: ${baselineDescriptors}`);
    console.log('    t   rssMiB  heapMiB   fds  loopP99   tls  http   ok/5s  fail');
    const started = Date.now();
    const until = started + SECONDS * 1000;
    const workers = [
      h2loadLoop('tls-close-first', until, ['-n', '400', '-c', '4', `--connect-to=127.0.0.1:${ports.tls}`, `https://${CLOSE}/small`]),
      h2loadLoop('http-keep-alive', until, ['-n', '1000', '-c', '4', `--connect-to=127.0.0.1:${ports.http}`, `http://${KEEP}:${ports.nginxHttp}/small`]),
      h2loadLoop('http-close-first', until, ['-n', '200', '-c', '2', `--connect-to=127.0.0.1:${ports.http}`, `http://${CLOSE}:${ports.nginxHttp}/medium`]),
      ...Array.from({ length: 4 }, () => longLivedLoop('tls12-long-lived', until, ports.tls)),
      connectLoop('connect-tls13-1MiB', until, ports.http, ports.nginxTls),
      blockedLoop('blocked', until, ports.tls, ports.http),
      dnsLoop('dns', until, ports.dns),
      catalogLoop('catalog-updates', until, ports.dns, catalog),
    ];
    const samples: Sample[] = [];
    while (Date.now() < until) {
      await sleep(SAMPLE_SECONDS * 1000);
      const s = await sample(ports.admin, pid, started);
      printRow(s, samples.at(-1));
      samples.push(s);
    }
    await Promise.all(workers);

    // The end: load stopped, every connection finished. The gateway must be back where it began.
    let end = await sample(ports.admin, pid, started);
    for (let i = 0; i < 60 && (end.active.tls + end.active.http > 0 || end.descriptors > baselineDescriptors); i++) {
      await sleep(500);
      end = await sample(ports.admin, pid, started);
    }
    const endDescriptors = await restingDescriptors(pid);
    const extra = descriptorTargets(pid).filter((target) => !baselineTargets.includes(target));

    const afterWarmup = samples.filter((s) => s.t >= WARMUP_SECONDS);
    const first = afterWarmup.slice(0, 3);
    const last = samples.slice(-3);
    const mean = (list: Sample[]): number => list.reduce((sum, s) => sum + s.rssMiB, 0) / Math.max(1, list.length);
    const rssGrowth = first.length === 0 ? 0 : mean(last) / mean(first) - 1;
    const { ok, failed } = totals();
    const problems: string[] = [];
    if (rssGrowth > RSS_GROWTH_LIMIT) problems.push(`RSS grew ${(rssGrowth * 100).toFixed(1)}% after warm-up (limit ${RSS_GROWTH_LIMIT * 100}%)`);
    if (end.active.tls + end.active.http > 0) problems.push(`connections still counted open at the end: tls ${end.active.tls}, http ${end.active.http}`);
    if (endDescriptors > baselineDescriptors) problems.push(`descriptors ${endDescriptors} at the end, ${baselineDescriptors} before; new ones: ${extra.join(', ')}`);
    if (failed > 0) problems.push(`${failed} allowed requests failed: ${failures.slice(0, 10).join('; ')}`);
    if (errorLines.length > 0) problems.push(`${errorLines.length} error-level log lines: ${errorLines.slice(0, 3).join(' | ')}`);

    console.log('');
    for (const [worker, c] of Object.entries(counts)) console.log(`${worker.padEnd(20)} ok ${String(c.ok).padStart(8)}  blocked ${String(c.blocked).padStart(6)}  failed ${c.failed}`);
    console.log(`RSS after warm-up ${mean(first).toFixed(1)} MiB, at the end ${mean(last).toFixed(1)} MiB (${(rssGrowth * 100).toFixed(1)}%); loop p99 max ${Math.max(...samples.map((s) => s.loopP99Ms)).toFixed(1)} ms`);
    console.log(`descriptors ${baselineDescriptors} before, ${endDescriptors} after; gauges at the end tls ${end.active.tls} http ${end.active.http}; ${ok} requests and queries answered, ${failed} failed`);
    console.log(problems.length === 0 ? 'soak: PASS' : `soak: FAIL\n  ${problems.join('\n  ')}`);

    const date = new Date().toISOString();
    mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
    writeFileSync(
      new URL(`./results/soak-${date.slice(0, 10)}.json`, import.meta.url),
      `${JSON.stringify({ date, node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, seconds: SECONDS, sampleSeconds: SAMPLE_SECONDS, warmupSeconds: WARMUP_SECONDS, baselineDescriptors, endDescriptors, rssGrowth, counts, problems, samples }, null, 2)}\n`,
    );
    gateway.kill('SIGTERM');
    await new Promise((resolve) => gateway.once('exit', resolve));
    await upstream.close();
    await catalog.close();
    return problems.length === 0 ? 0 : 1;
  } finally {
    stopAll();
  }
}

process.exitCode = await main();
