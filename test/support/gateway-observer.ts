import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * The gateway's /metrics text, over a connection of its own that closes after the response: a
 * kept-alive scrape connection would be one more descriptor in the gateway between samples.
 */
export function scrape(adminUrl: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = get(`${adminUrl}/metrics`, { agent: false, timeout: 5_000 }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve(text));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('metrics scrape timed out')));
    request.on('error', reject);
  });
}

/** One sample's value (`labels` as written in the exposition, e.g. `listener="tls",result="limited"`); NaN when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const prefix = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? Number.NaN : Number(line.slice(prefix.length));
}

/** Sum of a metric's samples whose labels contain `match`. */
export function metricSum(text: string, name: string, match = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Open file descriptors of a process (Linux). */
export function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export interface Settled {
  active: number;
  descriptors: number;
  limited: number;
}

/** What the gateway holds now: proxy connections open (all listeners), descriptors, connections refused as limited. */
export async function proxyState(adminUrl: string, pid: number): Promise<Settled> {
  const text = await scrape(adminUrl);
  return {
    active: metricSum(text, 'portcullis_proxy_active_connections'),
    descriptors: descriptors(pid),
    limited: metricSum(text, 'portcullis_proxy_connections_total', 'result="limited"'),
  };
}

/**
 * Waits until nothing is open and the descriptors are back to `baselineDescriptors` (they may
 * take a moment: a socket closes after its last byte is flushed, the scrape's own connection
 * after its response); returns the state seen last.
 */
export async function settle(adminUrl: string, pid: number, baselineDescriptors: number, timeoutMs = 3_000): Promise<Settled> {
  const started = Date.now();
  for (;;) {
    const state = await proxyState(adminUrl, pid);
    if ((state.active === 0 && state.descriptors <= baselineDescriptors) || Date.now() - started > timeoutMs) return state;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const BLACKHOLE = fileURLToPath(new URL('./blackhole.py', import.meta.url));

/** An address:port that drops every SYN (see blackhole.py); `port` 0 picks one. */
export function startBlackhole(host: string, port = 0): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn('python3', [BLACKHOLE, host, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`blackhole exited with ${String(code)}`)));
    createInterface({ input: child.stdout }).once('line', (line) => resolve({ port: Number(line), child }));
  });
}

/** The gateway's descriptors at rest: the fewest seen over a few quiet samples (no scrape in flight). */
export async function restingDescriptors(pid: number, samples = 10): Promise<number> {
  let fewest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < samples; i++) {
    fewest = Math.min(fewest, descriptors(pid));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return fewest;
}
