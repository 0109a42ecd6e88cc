import type { EventEmitter } from 'node:events';
import type { CatalogShare } from '../../catalog/updater.js';
import type { PolicyState } from '../state.js';

export interface StoreHealth {
  isHealthy: boolean;
  /** Why not, in words, for /readyz. */
  reason: string | null;
}

/**
 * Where the policy state lives. `update` is the only way to change it: it reads the newest
 * state, applies `change`, and resolves once the result is durable (fsynced file, or accepted
 * by Redis); concurrent updates are serialised, never lost. A state that arrives from
 * elsewhere (another gateway of the fleet) is announced with 'state'.
 */
export interface PolicyStore extends EventEmitter<{ state: [PolicyState] }> {
  readonly kind: 'file' | 'redis';
  /** The state to enforce at start (seeded with `initial` when the store is empty). */
  load(initial: PolicyState): Promise<PolicyState>;
  update<T>(change: (current: PolicyState) => { state: PolicyState; result: T }): Promise<{ state: PolicyState; result: T }>;
  health(): StoreHealth;
  /** How the fleet shares verified catalog bundles (Redis); null for a gateway on its own. */
  readonly catalogShare: CatalogShare | null;
  close(): Promise<void>;
}
