import { EventEmitter } from 'node:events';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { PortcullisError, isPortcullisError } from '../../errors.js';
import type { Logger } from '../../observability/logger.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { parseState, type PolicyState } from '../state.js';
import type { PolicyStore, StoreHealth } from './types.js';

export interface FileStoreOptions {
  /** `store.path`. */
  dir: string;
  logger: Logger;
  /** Start from the last good copy when the current file is corrupt (`start --recover`). */
  isRecovering?: boolean;
}

/**
 * The embedded store: `policy.json` under store.path, replaced atomically on every change (temp
 * file, fsync, rename, fsync of the directory) with the previous version kept beside it as
 * `policy.prev.json`. A corrupt `policy.json` stops the start with a message naming the file
 * and the problem; `--recover` then starts from the previous copy and keeps the corrupt file
 * aside for inspection. Rules are never dropped silently.
 */
export class FileStore extends EventEmitter<{ state: [PolicyState] }> implements PolicyStore {
  readonly kind = 'file';
  readonly catalogShare = null;
  readonly path: string;
  readonly previousPath: string;
  private current: PolicyState | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private lastError: string | null = null;

  constructor(private readonly options: FileStoreOptions) {
    super();
    this.path = join(options.dir, 'policy.json');
    this.previousPath = join(options.dir, 'policy.prev.json');
  }

  async load(initial: PolicyState): Promise<PolicyState> {
    const log = this.options.logger;
    const text = await readIfExists(this.path);
    if (text === null) {
      // No current file but a previous one: a change was being written when the process died.
      // It was never acknowledged; the previous copy is the last acknowledged state.
      const previous = await readIfExists(this.previousPath);
      if (previous !== null) {
        const state = parseState(previous, this.previousPath);
        log.warn({ component: 'store', file: this.previousPath, revision: state.version }, 'policy.json missing: continuing from the previous copy');
        await this.write(state);
        return state;
      }
      await this.write(initial);
      log.info({ component: 'store', file: this.path }, 'new policy store');
      return initial;
    }
    try {
      this.current = parseState(text, this.path);
      return this.current;
    } catch (e: unknown) {
      if (!isPortcullisError(e) || e.code !== 'PCL_ERR_STORE_CORRUPT') throw e;
      return await this.recover(e);
    }
  }

  update<T>(change: (current: PolicyState) => { state: PolicyState; result: T }): Promise<{ state: PolicyState; result: T }> {
    const run = this.queue.then(async () => {
      if (this.current === null) throw new PortcullisError('PCL_ERR_STORE_UNAVAILABLE', 'store not loaded');
      const next = change(this.current);
      try {
        await this.write(next.state);
        this.lastError = null;
      } catch (e: unknown) {
        this.lastError = e instanceof Error ? e.message : String(e);
        throw new PortcullisError('PCL_ERR_STORE_UNAVAILABLE', `cannot write ${this.path}: ${this.lastError}`, { cause: e });
      }
      return next;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  health(): StoreHealth {
    return this.lastError === null ? { isHealthy: true, reason: null } : { isHealthy: false, reason: `last write failed: ${this.lastError}` };
  }

  async close(): Promise<void> {
    await this.queue;
  }

  private async write(state: PolicyState): Promise<void> {
    await writeFileAtomic(this.path, `${JSON.stringify(state, null, 2)}\n`, { previousPath: this.previousPath });
    this.current = state;
  }

  private async recover(corruption: PortcullisError): Promise<PolicyState> {
    const previousText = await readIfExists(this.previousPath);
    let previous: PolicyState | null = null;
    let previousProblem = 'there is no previous copy';
    if (previousText !== null) {
      try {
        previous = parseState(previousText, this.previousPath);
      } catch (e: unknown) {
        previousProblem = `the previous copy is corrupt too (${e instanceof Error ? e.message : String(e)})`;
      }
    }
    if (this.options.isRecovering !== true || previous === null) {
      const hint =
        previous === null
          ? `${previousProblem}: repair or remove the file to start`
          : `start with --recover to continue from the previous copy ${this.previousPath} (revision ${previous.version}); the corrupt file is kept aside`;
      throw new PortcullisError('PCL_ERR_STORE_CORRUPT', `policy store is corrupt: ${corruption.message}; ${hint}`, { cause: corruption, details: corruption.details });
    }
    const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.path, aside);
    // The previous copy becomes current again; it is also kept as the previous copy.
    await writeFileAtomic(this.path, previousText!);
    this.current = previous;
    this.options.logger.warn({ component: 'store', corrupt: aside, revision: previous.version }, 'recovered the policy store from the previous copy');
    return previous;
  }
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
