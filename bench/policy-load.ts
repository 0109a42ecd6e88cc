/**
 * Policy engine benchmark: loading 1,000,000 domain rules, decide() latency, and how long a
 * rebuild-and-swap of that snapshot blocks the event loop.
 *
 *   npm run bench:policy            (RULES=200000 for a quicker run)
 *
 * Targets (issue "Foundation"): load <= 2 s and <= 150 MB RSS added; decide() p50 <= 1 µs;
 * event-loop delay during rebuild <= 50 ms.
 */
import { execSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { APP_IDS, loadCatalog } from '../src/catalog/index.js';
import { parseList } from '../src/lists/index.js';
import { PolicyEngine, type ListEntries } from '../src/policy/index.js';

const RULES = Number(process.env.RULES ?? 1_000_000);
const DECIDES = 1_000_000;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function rssMb(): number {
  gc();
  return process.memoryUsage().rss / 1024 / 1024;
}

function randomLabel(rng: () => number, min: number, max: number): string {
  const len = min + Math.floor(rng() * (max - min + 1));
  let s = '';
  for (let i = 0; i < len; i++) s += 'abcdefghijklmnopqrstuvwxyz0123456789'.charAt(Math.floor(rng() * 36));
  return s;
}

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function main(): Promise<void> {
  const rng = mulberry32(42);
  const tlds = ['com', 'net', 'org', 'io', 'co.kr', 'jp'];
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));
  const file = join(dir, 'domains.txt');
  const names: string[] = [];
  for (let i = 0; i < RULES; i++) names.push(`${randomLabel(rng, 4, 12)}.${randomLabel(rng, 3, 10)}.${tlds[i % tlds.length]}`);
  writeFileSync(file, `# generated\n${names.join('\n')}\n`);

  const catalog = await loadCatalog();
  const engine = new PolicyEngine({ catalog, apps: { enabled: new Set(APP_IDS), extended: new Set() } });

  // --- load: read + parse + build + swap, as the list manager does it
  const rssBefore = rssMb();
  const loadStart = performance.now();
  const text = await readFile(file, 'utf8');
  const parsed = await parseList(text, 'domains');
  const entries: ListEntries = { name: 'bench', action: 'block', app: null, ...parsed };
  await engine.setLists([entries]);
  const loadMs = performance.now() - loadStart;
  const rssAfter = rssMb();
  if (parsed.suffix.length !== RULES) throw new Error(`parsed ${parsed.suffix.length} of ${RULES}`);

  // --- decide(): half listed names (with a subdomain), a quarter catalog names, a quarter misses
  const queries: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const r = i % 4;
    if (r < 2) queries.push(`www.${names[Math.floor(rng() * names.length)]}`);
    else if (r === 2) queries.push(['talk-pilsner.kakao.com', 'legy-jp.line-apps.com', 'obs.line-scdn.net'][i % 3]!);
    else queries.push(`${randomLabel(rng, 3, 8)}.example${i}.com`);
  }
  let blocked = 0;
  for (let i = 0; i < 200_000; i++) if (engine.decide({ name: queries[i % queries.length]!, layer: 'dns' }).verdict === 'block') blocked++;
  const loopStart = performance.now();
  for (let i = 0; i < DECIDES; i++) if (engine.decide({ name: queries[i % queries.length]!, layer: 'dns' }).verdict === 'block') blocked++;
  const opsPerSec = DECIDES / ((performance.now() - loopStart) / 1000);
  const samples = new Float64Array(200_000);
  let overhead = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 1000; i++) {
    const a = process.hrtime.bigint();
    overhead = Math.min(overhead, Number(process.hrtime.bigint() - a));
  }
  for (let i = 0; i < samples.length; i++) {
    const q = queries[i % queries.length]!;
    const a = process.hrtime.bigint();
    engine.decide({ name: q, layer: 'dns' });
    samples[i] = Math.max(0, Number(process.hrtime.bigint() - a) - overhead);
  }
  samples.sort();
  const p50 = percentile(samples, 0.5) / 1000;
  const p99 = percentile(samples, 0.99) / 1000;

  // --- rebuild and swap under a ticking event loop
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let maxGapMs = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
  }, 1);
  histogram.enable();
  const rebuildStart = performance.now();
  const retext = await readFile(file, 'utf8');
  const reparsed = await parseList(retext, 'domains');
  await engine.setLists([{ name: 'bench', action: 'block', app: null, ...reparsed }]);
  const rebuildMs = performance.now() - rebuildStart;
  histogram.disable();
  clearInterval(ticker);
  const maxDelayMs = histogram.max / 1e6;

  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    /* not a checkout */
  }
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    commit,
    rules: RULES,
    loadMs: Math.round(loadMs),
    rssAddedMb: Math.round(rssAfter - rssBefore),
    decideP50Us: Number(p50.toFixed(3)),
    decideP99Us: Number(p99.toFixed(3)),
    decideOpsPerSec: Math.round(opsPerSec),
    rebuildMs: Math.round(rebuildMs),
    rebuildMaxEventLoopDelayMs: Number(maxDelayMs.toFixed(1)),
    rebuildMaxTimerGapMs: Number(maxGapMs.toFixed(1)),
    blockedSeen: blocked,
  };
  const rows: [string, string, string][] = [
    ['load 1M rules (read+parse+build+swap)', `${result.loadMs} ms`, '<= 2000 ms'],
    ['RSS added by the load', `${result.rssAddedMb} MB`, '<= 150 MB'],
    ['decide() p50', `${result.decideP50Us} µs`, '<= 1 µs'],
    ['decide() p99', `${result.decideP99Us} µs`, ''],
    ['decide() throughput', `${result.decideOpsPerSec.toLocaleString('en')} ops/s`, ''],
    ['rebuild + swap', `${result.rebuildMs} ms`, ''],
    ['max event-loop delay during rebuild', `${result.rebuildMaxEventLoopDelayMs} ms`, '<= 50 ms'],
  ];
  console.log(`portcullis policy bench — ${RULES.toLocaleString('en')} domain rules, node ${result.node}, ${result.cpu}, commit ${commit}`);
  for (const [metric, value, target] of rows) console.log(`${metric.padEnd(40)} ${value.padStart(18)}   ${target}`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/policy-${result.date.slice(0, 10)}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
}

await main();
