import { createHash } from 'node:crypto';
import { APP_IDS, isAppId, type AppId } from '../catalog/index.js';
import { PortcullisError } from '../errors.js';
import { normalizeAdminRule, type AdminRule, type AdminRuleInput } from '../policy/index.js';

/**
 * What admins change and the store keeps: which apps are blocked and the admin rules. `version`
 * is the store's revision: it moves by one on every acknowledged change, on whichever gateway of
 * a fleet took it, and orders states between gateways. It is not shown as the policy version:
 * that is the engine's (what is in force, lists included), the one the API, metrics, audit log
 * and nft file give.
 */
export interface PolicyState {
  version: number;
  apps: Record<AppId, boolean>;
  rules: AdminRule[];
  /** Rule ids are `r<N>`, never reused. */
  nextRuleId: number;
}

/** A change, recorded in the audit log as it was asked for. */
export type PolicyChange =
  | { kind: 'app'; app: AppId; enabled: boolean }
  | { kind: 'rule-add'; rule: AdminRuleInput }
  | { kind: 'rule-remove'; id: string };

export interface ChangeOutcome {
  state: PolicyState;
  before: unknown;
  after: unknown;
}

export function initialState(enabledApps: readonly AppId[]): PolicyState {
  const enabled = new Set(enabledApps);
  return { version: 1, apps: Object.fromEntries(APP_IDS.map((id) => [id, enabled.has(id)])) as Record<AppId, boolean>, rules: [], nextRuleId: 1 };
}

export function enabledApps(state: PolicyState): AppId[] {
  return APP_IDS.filter((id) => state.apps[id]);
}

/**
 * Applies one change to a state, giving the next state (version + 1) and what the change
 * looked like before and after, for the audit log. Throws PortcullisError for invalid input
 * (PCL_ERR_INVALID_*, PCL_ERR_UNKNOWN_APP), a rule that exists already (PCL_ERR_CONFLICT) or a
 * missing rule (PCL_ERR_NOT_FOUND).
 */
export function applyChange(state: PolicyState, change: PolicyChange): ChangeOutcome {
  const version = state.version + 1;
  switch (change.kind) {
    case 'app': {
      const before = { app: change.app, enabled: state.apps[change.app] };
      return { state: { ...state, version, apps: { ...state.apps, [change.app]: change.enabled } }, before, after: { app: change.app, enabled: change.enabled } };
    }
    case 'rule-add': {
      const rule: AdminRule = { id: `r${state.nextRuleId}`, ...normalizeAdminRule(change.rule) };
      const same = state.rules.find((r) => r.type === rule.type && r.value === rule.value && r.action === rule.action && r.app === rule.app);
      if (same !== undefined) {
        throw new PortcullisError('PCL_ERR_CONFLICT', `the same rule exists already: ${same.id} (${same.action} ${same.type} ${same.value})`, { details: { existing: same.id } });
      }
      return { state: { ...state, version, rules: [...state.rules, rule], nextRuleId: state.nextRuleId + 1 }, before: null, after: rule };
    }
    case 'rule-remove': {
      const rule = state.rules.find((r) => r.id === change.id);
      if (rule === undefined) throw notFound(`no rule with id "${change.id}"`);
      return { state: { ...state, version, rules: state.rules.filter((r) => r !== rule) }, before: rule, after: null };
    }
  }
}

export function notFound(message: string): PortcullisError {
  return new PortcullisError('PCL_ERR_NOT_FOUND', message);
}

/** A strong ETag over a resource's JSON: equal content gives the same tag on every gateway. */
export function etagOf(value: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(value)).digest('base64url').slice(0, 22)}"`;
}

/**
 * Checks a state read back from disk or Redis and returns it typed; every rule is normalised
 * again, so a hand-edited store cannot smuggle in a rule the API would refuse. Throws
 * PCL_ERR_STORE_CORRUPT naming what is wrong.
 */
export function parseState(text: string, origin: string): PolicyState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e: unknown) {
    throw storeCorrupt(origin, `not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof raw !== 'object' || raw === null) throw storeCorrupt(origin, 'not an object');
  const { version, apps, rules, nextRuleId } = raw as Record<string, unknown>;
  if (!Number.isSafeInteger(version) || (version as number) < 1) throw storeCorrupt(origin, 'version must be a positive integer');
  if (!Number.isSafeInteger(nextRuleId) || (nextRuleId as number) < 1) throw storeCorrupt(origin, 'nextRuleId must be a positive integer');
  if (typeof apps !== 'object' || apps === null) throw storeCorrupt(origin, 'apps must be an object');
  const appStates = {} as Record<AppId, boolean>;
  for (const id of APP_IDS) {
    const enabled = (apps as Record<string, unknown>)[id];
    if (typeof enabled !== 'boolean') throw storeCorrupt(origin, `apps.${id} must be true or false`);
    appStates[id] = enabled;
  }
  const unknownApp = Object.keys(apps).find((id) => !isAppId(id));
  if (unknownApp !== undefined) throw storeCorrupt(origin, `apps.${unknownApp}: unknown app`);
  if (!Array.isArray(rules)) throw storeCorrupt(origin, 'rules must be a list');
  const ids = new Set<string>();
  const parsedRules = rules.map((rule: unknown, i): AdminRule => {
    if (typeof rule !== 'object' || rule === null) throw storeCorrupt(origin, `rules[${i}] must be an object`);
    const { id, type, value, action, app, comment } = rule as Record<string, unknown>;
    if (typeof id !== 'string' || !/^r[0-9]+$/.test(id) || ids.has(id)) throw storeCorrupt(origin, `rules[${i}].id must be a unique r<N>`);
    ids.add(id);
    if (type !== 'domain' && type !== 'cidr' && type !== 'port') throw storeCorrupt(origin, `rules[${i}].type must be domain, cidr or port`);
    if (action !== 'block' && action !== 'allow') throw storeCorrupt(origin, `rules[${i}].action must be block or allow`);
    if (typeof value !== 'string') throw storeCorrupt(origin, `rules[${i}].value must be a string`);
    if (app !== null && typeof app !== 'string') throw storeCorrupt(origin, `rules[${i}].app must be an app id or null`);
    if (comment !== null && typeof comment !== 'string') throw storeCorrupt(origin, `rules[${i}].comment must be a string or null`);
    try {
      return { id, ...normalizeAdminRule({ type, value, action, app, comment }) };
    } catch (e: unknown) {
      throw storeCorrupt(origin, `rules[${i}]: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  return { version: version as number, apps: appStates, rules: parsedRules, nextRuleId: nextRuleId as number };
}

export function storeCorrupt(origin: string, reason: string): PortcullisError {
  return new PortcullisError('PCL_ERR_STORE_CORRUPT', `${origin}: ${reason}`, { details: { origin, reason } });
}
