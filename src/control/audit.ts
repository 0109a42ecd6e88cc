import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../observability/logger.js';
import type { PolicyChange } from './state.js';

export interface AuditEntry {
  time: string;
  /** The configured name of the token that made the change (`loopback` without tokens). */
  actor: string;
  change: PolicyChange['kind'];
  version: number;
  before: unknown;
  after: unknown;
}

/** The tail of the file read at start, so GET /v1/audit shows history across restarts. */
const TAIL_BYTES = 1024 * 1024;

/**
 * The audit log: one JSON line per acknowledged change in `audit.jsonl` under store.path,
 * appended and fsynced before the change is acknowledged, mirrored to the pino log. The
 * newest `capacity` entries are kept in memory for the API.
 */
export class AuditLog {
  readonly path: string;
  private readonly entries: AuditEntry[] = [];
  private file: FileHandle | null = null;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    dir: string,
    private readonly log: Logger,
    private readonly capacity: number,
  ) {
    this.path = join(dir, 'audit.jsonl');
  }

  async open(): Promise<void> {
    const size = await stat(this.path).then((s) => s.size, () => 0);
    if (size > 0) {
      const text = size <= TAIL_BYTES ? await readFile(this.path, 'utf8') : await readTail(this.path, size);
      for (const line of text.split('\n')) {
        if (line === '') continue;
        try {
          this.remember(JSON.parse(line) as AuditEntry);
        } catch {
          // A line cut by a crash mid-append (never acknowledged): skipped, the rest is kept.
        }
      }
    }
    this.file = await open(this.path, 'a', 0o640);
  }

  append(entry: AuditEntry): Promise<void> {
    const run = this.queue.then(async () => {
      this.log.info({ component: 'audit', actor: entry.actor, change: entry.change, version: entry.version, before: entry.before, after: entry.after }, 'policy changed');
      this.remember(entry);
      if (this.file === null) return;
      await this.file.write(`${JSON.stringify(entry)}\n`);
      await this.file.datasync();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Newest first. */
  recent(limit: number): AuditEntry[] {
    return this.entries.slice(-limit).reverse();
  }

  async close(): Promise<void> {
    await this.queue;
    await this.file?.close();
    this.file = null;
  }

  private remember(entry: AuditEntry): void {
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
  }
}

async function readTail(path: string, size: number): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(TAIL_BYTES);
    await handle.read(buffer, 0, TAIL_BYTES, size - TAIL_BYTES);
    const text = buffer.toString('utf8');
    // Drop the first, probably partial, line.
    return text.slice(text.indexOf('\n') + 1);
  } finally {
    await handle.close();
  }
}
