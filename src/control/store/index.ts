import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../../config/index.js';
import type { Logger } from '../../observability/logger.js';
import { parseState, type PolicyState } from '../state.js';
import { FileStore } from './file-store.js';
import { RedisStore } from './redis-store.js';
import type { PolicyStore } from './types.js';

export type { PolicyStore, StoreHealth } from './types.js';
export { FileStore } from './file-store.js';
export { RedisStore } from './redis-store.js';

export function openStore(config: Config, logger: Logger, options: { isRecovering?: boolean } = {}): PolicyStore {
  return config.store.redis === null
    ? new FileStore({ dir: config.store.path, logger, isRecovering: options.isRecovering })
    : new RedisStore({ url: config.store.redis, dir: config.store.path, logger });
}

/**
 * The stored state without opening the store, for one-shot commands (`check`, `apps`): the file
 * store's policy.json (or its previous copy), or the fleet's local copy. Null when there is none.
 */
export async function readStoredState(config: Config): Promise<PolicyState | null> {
  const candidates = config.store.redis === null ? ['policy.json', 'policy.prev.json'] : ['fleet-policy.json'];
  for (const name of candidates) {
    const path = join(config.store.path, name);
    const text = await readFile(path, 'utf8').catch(() => null);
    if (text !== null) return parseState(text, path);
  }
  return null;
}
