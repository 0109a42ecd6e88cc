import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { udpExchange } from './dns-clients.js';
import { buildQuery, decode } from './dns-message.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export const WRITE_TOKEN = 'write-token-0123456789abcdef';
export const READ_TOKEN = 'read-token-0123456789abcdef';

/** A `portcullis start` child process with the ports it bound, read from its log. */
export interface GatewayProcess {
  child: ChildProcess;
  dnsPort: number;
  tlsPort: number;
  httpPort: number;
  /** The 'proxy listening' log entry, with the transparent listeners when configured. */
  proxyListening: Record<string, unknown>;
  adminUrl: string;
  logs: Record<string, unknown>[];
  stderr: string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Writes a config for a gateway on loopback port 0 everywhere, with a write and a read token;
 * `proxy.lines` are further proxy.* keys (YAML lines under `proxy:`).
 */
export async function writeGatewayConfig(dir: string, options: { upstream: string; redis?: string; extra?: string[]; proxy?: { tlsUpstreamPort?: number; httpUpstreamPort?: number; lines?: string[] } }): Promise<string> {
  const file = join(dir, 'portcullis.yaml');
  const proxy = options.proxy ?? {};
  const upstreamPort = (port: number | undefined): string => (port === undefined ? '' : `, upstreamPort: ${port}`);
  await writeFile(
    file,
    [
      'dns:',
      '  listen: 127.0.0.1:0',
      `  upstreams: [${options.upstream}]`,
      'proxy:',
      `  tls: { listen: 127.0.0.1:0${upstreamPort(proxy.tlsUpstreamPort)} }`,
      `  http: { listen: 127.0.0.1:0${upstreamPort(proxy.httpUpstreamPort)} }`,
      ...(proxy.lines ?? []).map((line) => `  ${line}`),
      'admin:',
      '  listen: 127.0.0.1:0',
      '  tokens:',
      `    - { name: ops, token: ${WRITE_TOKEN}, scopes: [write] }`,
      `    - { name: viewer, token: ${READ_TOKEN}, scopes: [read] }`,
      'store:',
      `  path: ${join(dir, 'data')}`,
      ...(options.redis === undefined ? [] : [`  redis: ${options.redis}`]),
      ...(options.extra ?? []),
      '',
    ].join('\n'),
  );
  return file;
}

/**
 * Starts `portcullis start --config FILE` and resolves once DNS and the admin API listen.
 * `prefix` runs it under another command (`ip netns exec NS`, which execs in place, so signals
 * still reach the gateway).
 */
export function startGateway(config: string, args: string[] = [], timeoutMs = 15_000, prefix: readonly string[] = [], env: Record<string, string> = {}): Promise<GatewayProcess> {
  const command = [...prefix, process.execPath, CLI, 'start', '--config', config, ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let dnsPort = 0;
    let tlsPort = 0;
    let httpPort = 0;
    let adminUrl = '';
    let proxyListening: Record<string, unknown> = {};
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gateway did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening: ${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === 'dns listening') dnsPort = (entry.udp as { port: number }).port;
      if (entry.msg === 'proxy listening') {
        tlsPort = (entry.tls as { port: number }).port;
        httpPort = (entry.http as { port: number }).port;
        proxyListening = entry;
      }
      if (entry.msg === 'admin API listening') adminUrl = `http://127.0.0.1:${String(entry.port)}`;
      if (dnsPort !== 0 && adminUrl !== '' && entry.msg === 'portcullis started') {
        clearTimeout(timer);
        resolve({
          child,
          dnsPort,
          tlsPort,
          httpPort,
          proxyListening,
          adminUrl,
          logs,
          get stderr() {
            return stderr;
          },
          exited,
          async stop(signal: NodeJS.Signals = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
  });
}

/** One A query over UDP: the rcode and the addresses answered. */
export async function resolveA(port: number, name: string): Promise<{ rcode: number; addresses: string[] } | null> {
  const reply = await udpExchange(port, buildQuery({ id: Math.floor(Math.random() * 65_535), name }), 1_000);
  if (reply === null) return null;
  const decoded = decode(reply);
  return { rcode: decoded.rcode, addresses: decoded.answers.filter((r) => r.type === 1).map((r) => String(r.value)) };
}

/** Polls until `predicate` holds; returns the milliseconds it took, or throws after `timeoutMs`. */
export async function waitFor(predicate: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await predicate()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export async function api(base: string, method: string, path: string, body?: unknown, token = WRITE_TOKEN): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : (JSON.parse(text) as unknown), headers: response.headers };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 15_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; throws after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  for (;;) {
    const isOpen = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (isOpen) return;
    if (Date.now() - started > timeoutMs) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A TCP port free on 127.0.0.1 at the time of asking. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
