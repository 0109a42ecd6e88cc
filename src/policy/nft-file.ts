import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { deleteTrackedFlow, listTrackedFlows } from './conntrack.js';
import type { PolicyEngine } from './engine.js';
import { exportNftables } from './nft-export.js';

const execFileAsync = promisify(execFile);

/** `nft -f` is bounded: a wedged netlink call cannot stall the writes after it. */
const NFT_TIMEOUT_MS = 10_000;

export interface NftFileOptions {
  file: string;
  table: string;
  /** Load the file with `nft -f` after each write, and forget tracked flows the policy now blocks. */
  apply: boolean;
  logger: Logger;
  onWritten?: (isSuccess: boolean) => void;
}

/** Runs `task` one at a time: a call while it runs is coalesced into one more run after it. */
class SingleFlight {
  private running: Promise<void> | null = null;
  private isPending = false;

  constructor(private readonly task: () => Promise<void>) {}

  trigger(): void {
    if (this.running !== null) {
      this.isPending = true;
      return;
    }
    this.running = (async () => {
      do {
        this.isPending = false;
        await this.task();
      } while (this.hasPending());
    })().finally(() => {
      this.running = null;
    });
  }

  /** Read through a call: set by trigger() while the task was awaited. */
  private hasPending(): boolean {
    return this.isPending;
  }

  cancelPending(): void {
    this.isPending = false;
  }

  async settled(): Promise<void> {
    while (this.running !== null) await this.running;
  }
}

/**
 * Keeps an nftables file in step with the policy: written at start and after every change,
 * atomically, so `nft -f` never reads half a ruleset; loaded into the kernel too when `apply` is
 * set. The first change is written at once; changes during a write coalesce into one more.
 *
 * With `apply`, after each load the connection-tracking entries of flows the policy now blocks
 * are deleted (decide() judges each tracked flow's original destination): where flowtable
 * offload carries established flows past the forward chain, that is what makes their next
 * packet meet the new rules. Only those entries, each by its exact tuple: deleting others would
 * break flows a NAT on the same host is translating. This runs on its own, so a busy conntrack
 * table never delays the next ruleset.
 */
export class NftFileSync {
  private readonly writes = new SingleFlight(() => this.write());
  private readonly forgets = new SingleFlight(() => this.forgetBlockedFlows());
  private hasWarnedNoConntrack = false;
  private readonly onSwap = (): void => this.writes.trigger();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly options: NftFileOptions,
  ) {}

  async start(): Promise<void> {
    this.engine.on('swap', this.onSwap);
    this.writes.trigger();
    await this.writes.settled();
  }

  async stop(): Promise<void> {
    this.engine.off('swap', this.onSwap);
    this.writes.cancelPending();
    this.forgets.cancelPending();
    await this.writes.settled();
    await this.forgets.settled();
  }

  private get log(): Logger {
    return this.options.logger.child({ component: 'nftables' });
  }

  private async write(): Promise<void> {
    const { file, table, apply } = this.options;
    try {
      const { ruleset, stats } = exportNftables(this.engine.current, { table });
      await writeFileAtomic(file, ruleset);
      if (apply) await execFileAsync('nft', ['-f', file], { timeout: NFT_TIMEOUT_MS });
      this.log.info({ file, applied: apply, version: this.engine.version, ...stats }, 'nftables ruleset written');
      this.options.onWritten?.(true);
      if (apply) this.forgets.trigger();
    } catch (e: unknown) {
      this.log.error({ file, err: errorMessage(e) }, 'nftables ruleset not written');
      this.options.onWritten?.(false);
    }
  }

  private async forgetBlockedFlows(): Promise<void> {
    const flows = await listTrackedFlows();
    if (flows === null) {
      if (!this.hasWarnedNoConntrack) this.log.warn({}, 'conntrack is not installed: where flowtable offload is used, flows already established toward newly blocked networks are not cut (apt-get install conntrack)');
      this.hasWarnedNoConntrack = true;
      return;
    }
    const snapshot = this.engine.current;
    let deleted = 0;
    for (const flow of flows) {
      if (snapshot.decide({ ip: flow.dst, port: flow.dport, proto: flow.proto, layer: 'ip' }).verdict !== 'block') continue;
      if (await deleteTrackedFlow(flow)) deleted++;
    }
    if (deleted > 0) this.log.info({ deleted, version: snapshot.version }, 'tracked flows toward blocked networks forgotten');
  }
}
