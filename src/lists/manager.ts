import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ListConfig } from '../config/index.js';
import { DEFAULTS } from '../config/defaults.js';
import { PortcullisError, errorMessage } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { ListEntries } from '../policy/index.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { fetchList } from './fetch.js';
import { countEntries, parseList, type ListFormat, type ParsedList, type SkippedLine } from './formats.js';

export interface ListStatus {
  name: string;
  source: string;
  format: ListFormat | null;
  entries: number;
  skipped: number;
  firstSkipped: SkippedLine[];
  /** ISO time of the last successful load, null if never. */
  loadedAt: string | null;
  /** The last error, cleared by the next success. */
  lastError: string | null;
  /** True when the entries in force come from the on-disk copy of an earlier download. */
  fromCache: boolean;
}

interface ListState {
  config: ListConfig;
  parsed: ParsedList | null;
  status: ListStatus;
  etag: string | null;
  lastModified: string | null;
  mtimeMs: number;
  timer: NodeJS.Timeout | null;
}

export interface ListManagerOptions {
  /** Where downloaded lists are kept, so a restart with the source down still enforces them. */
  cacheDir: string;
  logger: Logger;
  /** Never touch the network: remote lists come from their on-disk copy only (`check`, `validate`). */
  offline?: boolean;
  /** Called after every load attempt of a list, with its outcome (metrics attach here). */
  onLoad?: (isSuccess: boolean) => void;
}

/**
 * Loads the extra lists (local files and http(s) URLs), refreshes them on their intervals and
 * hands the parsed entries to whoever listens. A failed load never empties a list: the last
 * good copy (in memory, else on disk) stays in force and the failure is reported.
 */
export class ListManager extends EventEmitter<{ update: [ListEntries[]] }> {
  private readonly lists: ListState[];
  private readonly options: ListManagerOptions;
  private isStopped = false;
  private readonly watchers: FSWatcher[] = [];

  constructor(configs: readonly ListConfig[], options: ListManagerOptions) {
    super();
    this.options = options;
    this.lists = configs.map((config) => ({
      config,
      parsed: null,
      etag: null,
      lastModified: null,
      mtimeMs: -1,
      timer: null,
      status: { name: config.name, source: config.source, format: null, entries: 0, skipped: 0, firstSkipped: [], loadedAt: null, lastError: null, fromCache: false },
    }));
  }

  /** Loads every list (bounded parallelism); resolves when each has loaded or failed. */
  async loadAll(): Promise<void> {
    await this.refresh();
  }

  /** Reloads the named lists (all by default) and emits one update if anything changed. */
  async refresh(names?: readonly string[]): Promise<ListStatus[]> {
    const targets = this.lists.filter((l) => names === undefined || names.includes(l.config.name));
    let changed = false;
    for (let i = 0; i < targets.length; i += DEFAULTS.listFetchConcurrency) {
      const batch = targets.slice(i, i + DEFAULTS.listFetchConcurrency);
      const results = await Promise.all(batch.map((list) => this.load(list)));
      changed ||= results.some(Boolean);
    }
    if (changed && !this.isStopped) this.emit('update', this.entries());
    return targets.map((l) => ({ ...l.status }));
  }

  /** Starts the refresh timers, and watches local list files so an edit is in force at once. */
  start(): void {
    for (const list of this.lists) {
      this.schedule(list);
      if (!list.config.isRemote) this.watch(list);
    }
  }

  stop(): void {
    this.isStopped = true;
    for (const list of this.lists) if (list.timer !== null) clearTimeout(list.timer);
    for (const watcher of this.watchers.splice(0)) watcher.close();
  }

  entries(): ListEntries[] {
    return this.lists
      .filter((l) => l.parsed !== null)
      .map((l) => ({
        name: l.config.name,
        action: l.config.action,
        app: l.config.app,
        suffix: l.parsed!.suffix,
        exact: l.parsed!.exact,
        allowSuffix: l.parsed!.allowSuffix,
        cidrs: l.parsed!.cidrs,
      }));
  }

  status(): ListStatus[] {
    return this.lists.map((l) => ({ ...l.status }));
  }

  private schedule(list: ListState): void {
    if (this.isStopped) return;
    list.timer = setTimeout(() => {
      void this.refresh([list.config.name]).finally(() => {
        this.schedule(list);
      });
    }, list.config.refreshMs);
    list.timer.unref();
  }

  /**
   * Watches the file's directory rather than the file: editors and config management replace
   * files by rename, which a watch on the old inode would miss. Changes are debounced.
   */
  private watch(list: ListState): void {
    const path = list.config.source;
    let debounce: NodeJS.Timeout | null = null;
    try {
      const watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file !== null && file !== basename(path)) return;
        if (debounce !== null) clearTimeout(debounce);
        debounce = setTimeout(() => {
          debounce = null;
          if (!this.isStopped) void this.refresh([list.config.name]);
        }, DEFAULTS.listWatchDebounceMs);
      });
      watcher.on('error', (e: Error) => {
        this.options.logger.warn({ component: 'lists', list: list.config.name, err: e.message }, 'cannot watch the list file; it reloads on its refresh interval and SIGHUP');
      });
      this.watchers.push(watcher);
    } catch (e: unknown) {
      this.options.logger.warn({ component: 'lists', list: list.config.name, err: errorMessage(e) }, 'cannot watch the list file; it reloads on its refresh interval and SIGHUP');
    }
  }

  private cachePath(list: ListState): string {
    return join(this.options.cacheDir, `${list.config.name}.txt`);
  }

  /** Returns true when the list's entries changed. */
  private async load(list: ListState): Promise<boolean> {
    const log = this.options.logger.child({ component: 'lists', list: list.config.name });
    try {
      const text = await this.read(list);
      if (text === null) return false; // unchanged since the last load
      const parsed = await parseList(text, list.config.format);
      if (countEntries(parsed) === 0 && text.trim() !== '' && parsed.skippedCount > 0) {
        throw new PortcullisError('PCL_ERR_LIST_READ', `${list.config.source}: no line could be read as a ${parsed.format} rule`, {
          details: { firstSkipped: parsed.skipped.slice(0, 3) },
        });
      }
      this.accept(list, parsed, false);
      if (list.config.isRemote) await writeFileAtomic(this.cachePath(list), text).catch((e: unknown) => {
        log.warn({ err: errorMessage(e) }, 'could not keep a copy of the downloaded list');
      });
      log.info({ entries: list.status.entries, skipped: parsed.skippedCount, format: parsed.format }, 'list loaded');
      this.options.onLoad?.(true);
      return true;
    } catch (e: unknown) {
      list.status.lastError = errorMessage(e);
      this.options.onLoad?.(false);
      // Forget the validators: they may name the version that just failed, and "unchanged"
      // must never hide (or appear to clear) a failure. The next load reads in full.
      list.etag = null;
      list.lastModified = null;
      list.mtimeMs = -1;
      if (list.parsed === null && list.config.isRemote) {
        const cached = await readFile(this.cachePath(list), 'utf8').catch(() => null);
        if (cached !== null) {
          this.accept(list, await parseList(cached, list.config.format), true);
          list.status.lastError = errorMessage(e);
          log.warn({ err: list.status.lastError, entries: list.status.entries }, 'list source failed; enforcing the copy from the last download');
          return true;
        }
      }
      log.error({ err: list.status.lastError, keptEntries: list.status.entries }, 'list load failed; keeping the last good copy');
      return false;
    }
  }

  private accept(list: ListState, parsed: ParsedList, fromCache: boolean): void {
    list.parsed = parsed;
    list.status = {
      ...list.status,
      format: parsed.format,
      entries: countEntries(parsed),
      skipped: parsed.skippedCount,
      firstSkipped: parsed.skipped.slice(0, 5),
      loadedAt: new Date().toISOString(),
      lastError: null,
      fromCache,
    };
  }

  /** The list's text, or null when it has not changed since the last load. */
  private async read(list: ListState): Promise<string | null> {
    const { config } = list;
    if (config.isRemote && this.options.offline === true) {
      throw new PortcullisError('PCL_ERR_LIST_FETCH', `${config.source}: not fetched (offline)`);
    }
    if (config.isRemote) {
      const fetched = await fetchList(config.source, {
        maxBytes: DEFAULTS.listFetchMaxBytes,
        timeoutMs: DEFAULTS.listFetchTimeoutMs,
        etag: list.parsed === null ? null : list.etag,
        lastModified: list.parsed === null ? null : list.lastModified,
      });
      list.etag = fetched.etag;
      list.lastModified = fetched.lastModified;
      return fetched.text;
    }
    let info;
    try {
      info = await stat(config.source);
    } catch (e: unknown) {
      throw new PortcullisError('PCL_ERR_LIST_READ', `${config.source}: ${errorMessage(e)}`, { cause: e });
    }
    if (info.size > DEFAULTS.listFetchMaxBytes) {
      throw new PortcullisError('PCL_ERR_LIST_TOO_LARGE', `${config.source}: larger than ${DEFAULTS.listFetchMaxBytes} bytes`);
    }
    if (list.parsed !== null && info.mtimeMs === list.mtimeMs) return null;
    list.mtimeMs = info.mtimeMs;
    try {
      return await readFile(config.source, 'utf8');
    } catch (e: unknown) {
      throw new PortcullisError('PCL_ERR_LIST_READ', `${config.source}: ${errorMessage(e)}`, { cause: e });
    }
  }
}
