import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DEFAULTS } from '../config/defaults.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { PolicyEngine } from './engine.js';
import { exportNftables } from './nft-export.js';

const execFileAsync = promisify(execFile);

export interface NftFileOptions {
  file: string;
  table: string;
  /** Load the file with `nft -f` after each write. */
  apply: boolean;
  logger: Logger;
  onWritten?: (isSuccess: boolean) => void;
}

/**
 * Keeps an nftables file in step with the policy: written at start and after every change
 * (a burst of changes once, after it settles), atomically, so `nft -f` never reads half a
 * ruleset; loaded into the kernel too when `apply` is set.
 */
export class NftFileSync {
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private readonly onSwap = (): void => this.schedule();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly options: NftFileOptions,
  ) {}

  async start(): Promise<void> {
    this.engine.on('swap', this.onSwap);
    await this.write();
  }

  stop(): Promise<void> {
    this.engine.off('swap', this.onSwap);
    if (this.timer !== null) clearTimeout(this.timer);
    return this.writing;
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.writing = this.writing.then(() => this.write());
    }, DEFAULTS.nftablesDebounceMs);
  }

  private async write(): Promise<void> {
    const { file, table, apply, logger } = this.options;
    const log = logger.child({ component: 'nftables' });
    try {
      const { ruleset, stats } = exportNftables(this.engine.current, { table });
      await writeFileAtomic(file, ruleset);
      if (apply) await execFileAsync('nft', ['-f', file], { timeout: 10_000 });
      log.info({ file, applied: apply, version: this.engine.version, ...stats }, 'nftables ruleset written');
      this.options.onWritten?.(true);
    } catch (e: unknown) {
      log.error({ file, err: errorMessage(e) }, 'nftables ruleset not written');
      this.options.onWritten?.(false);
    }
  }
}
