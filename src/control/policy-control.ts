import type { AppId } from '../catalog/index.js';
import type { Logger } from '../observability/logger.js';
import type { PolicyEngine } from '../policy/index.js';
import type { AuditLog } from './audit.js';
import { applyChange, enabledApps, type ChangeOutcome, type PolicyChange, type PolicyState } from './state.js';
import type { PolicyStore } from './store/types.js';

export interface PolicyControlOptions {
  store: PolicyStore;
  engine: PolicyEngine;
  audit: AuditLog;
  logger: Logger;
  /** `policy.extended` from the config: apps whose extended tier is enforced too. */
  extended: ReadonlySet<AppId>;
}

/**
 * The one way policy changes: through the store (durable first), then into the engine (the
 * snapshot DNS and proxy read, swapped at once), then into the audit log, and only then
 * acknowledged. States arriving from other gateways take the same road into the engine.
 */
export class PolicyControl {
  private state: PolicyState | null = null;
  private extended: ReadonlySet<AppId>;

  constructor(private readonly options: PolicyControlOptions) {
    this.extended = options.extended;
  }

  async start(initial: PolicyState): Promise<void> {
    this.enforce(await this.options.store.load(initial));
    this.options.store.on('state', (state) => {
      this.options.logger.info({ component: 'control', revision: state.version }, 'policy changed on another gateway');
      this.enforce(state);
    });
  }

  get current(): PolicyState {
    if (this.state === null) throw new Error('PolicyControl.start() was not called');
    return this.state;
  }

  /**
   * Makes one change durable and enforced. `precondition` runs against the newest state inside
   * the store's serialised update (the place for If-Match checks); it throws to refuse.
   */
  async change(change: PolicyChange, actor: string, precondition?: (current: PolicyState) => void): Promise<ChangeOutcome> {
    const { result } = await this.options.store.update((current) => {
      precondition?.(current);
      const outcome = applyChange(current, change);
      return { state: outcome.state, result: outcome };
    });
    this.enforce(result.state);
    // The version of the policy this change put in force: the one the API, metrics and nft file show.
    await this.options.audit.append({ time: new Date().toISOString(), actor, change: change.kind, version: this.options.engine.version, before: result.before, after: result.after });
    return result;
  }

  /** SIGHUP: `policy.extended` may have changed. */
  setExtended(extended: ReadonlySet<AppId>): void {
    this.extended = extended;
    this.options.engine.setApps({ enabled: new Set(enabledApps(this.current)), extended });
  }

  private enforce(state: PolicyState): void {
    const previous = this.state;
    // A state older than the one in force (a late echo of this gateway's own change) is ignored.
    if (previous !== null && state.version < previous.version) return;
    this.state = state;
    const { engine } = this.options;
    if (previous === null || JSON.stringify(previous.apps) !== JSON.stringify(state.apps)) {
      engine.setApps({ enabled: new Set(enabledApps(state)), extended: this.extended });
    }
    if (previous === null || JSON.stringify(previous.rules) !== JSON.stringify(state.rules)) engine.setAdminRules(state.rules);
  }
}
