import type { ActivityTotals } from '../observability/metrics.js';

const HOUR_MS = 60 * 60 * 1000;

export interface ActivityPoint {
  time: string;
  queriesPerSecond: number;
  blocksPerSecond: number;
}

/**
 * What the console's activity view and app cards show: the metrics' running totals sampled
 * every `intervalMs` for the last hour (a fixed number of samples), turned into rates and
 * into blocks per app over the last hour. Sampling keeps this off the query path entirely.
 */
export class ActivitySampler {
  private readonly samples: { atMs: number; totals: ActivityTotals }[] = [];
  private readonly keep: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly read: () => ActivityTotals,
    private readonly intervalMs: number,
  ) {
    this.keep = Math.ceil(HOUR_MS / intervalMs) + 1;
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Rates between consecutive samples, oldest first, for the last `minutes`, ending with now. */
  series(minutes: number, nowMs = Date.now()): ActivityPoint[] {
    const points = [...this.samples, { atMs: nowMs, totals: this.read() }].filter((s) => s.atMs >= nowMs - minutes * 60_000 - this.intervalMs);
    const out: ActivityPoint[] = [];
    for (let i = 1; i < points.length; i++) {
      const seconds = (points[i]!.atMs - points[i - 1]!.atMs) / 1000;
      if (seconds <= 0) continue;
      out.push({
        time: new Date(points[i]!.atMs).toISOString(),
        queriesPerSecond: (points[i]!.totals.queries - points[i - 1]!.totals.queries) / seconds,
        blocksPerSecond: (points[i]!.totals.blocks - points[i - 1]!.totals.blocks) / seconds,
      });
    }
    return out;
  }

  /** Blocks per app since the oldest sample within the last hour. */
  blocksLastHour(nowMs = Date.now()): ActivityTotals['blocksByApp'] {
    const now = this.read();
    const base = this.samples.find((s) => s.atMs >= nowMs - HOUR_MS)?.totals ?? now;
    return Object.fromEntries(Object.entries(now.blocksByApp).map(([app, n]) => [app, n - base.blocksByApp[app as keyof typeof base.blocksByApp]])) as ActivityTotals['blocksByApp'];
  }

  private sample(): void {
    this.samples.push({ atMs: Date.now(), totals: this.read() });
    if (this.samples.length > this.keep) this.samples.shift();
  }
}
