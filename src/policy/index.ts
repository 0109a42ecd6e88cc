export { normalizeAdminRule, normalizeRuleValue, type AdminRule, type AdminRuleInput, type AdminRuleType } from './admin-rule.js';
export { compileLists, compileOverlay, type ListEntries } from './compile.js';
export { PolicyEngine, type PolicyEngineOptions, type SwapEvent } from './engine.js';
export type { Action, CompiledRule, Layer } from './rule.js';
export { PolicySnapshot, type AddressPrefix, type AppState, type BlockEvent, type Decision, type DecisionQuery, type RuleCounts, type Verdict } from './snapshot.js';
