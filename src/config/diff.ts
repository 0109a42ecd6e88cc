import type { Config } from './schema.js';

/**
 * What SIGHUP puts in force without a restart. Everything else is read once at start:
 * listeners, the store, DNS and proxy behaviour, nftables, workers.
 */
export const RELOADABLE_KEYS: readonly string[] = Object.freeze(['admin.tokens', 'policy.extended', 'policy.lists', 'log.level']);

/** The dotted keys whose values differ between two resolved configurations (`source` aside). */
export function changedKeys(before: Config, after: Config): string[] {
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, path: string): void => {
    const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(a) && isObject(b)) {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[key], b[key], path === '' ? key : `${path}.${key}`);
      return;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(path);
  };
  walk({ ...before, source: null }, { ...after, source: null }, '');
  return out.sort();
}

/** Keys that only seed a new policy store: after the first start the API owns what they set. */
export const SEED_KEYS: readonly string[] = Object.freeze(['policy.apps']);

const isUnder = (key: string, roots: readonly string[]): boolean => roots.some((root) => key === root || key.startsWith(`${root}.`));

/** Of the changed keys, those a reload cannot apply: each needs a restart. */
export function restartKeys(changed: readonly string[]): string[] {
  return changed.filter((key) => !isUnder(key, RELOADABLE_KEYS) && !isUnder(key, SEED_KEYS));
}

/** Of the changed keys, those a reload applies. */
export function reloadedKeys(changed: readonly string[]): string[] {
  return changed.filter((key) => isUnder(key, RELOADABLE_KEYS));
}
