export { buildAdmin, type AdminDeps } from './app.js';
export { appViews, type AppView } from './app-view.js';
export { AuditLog, type AuditEntry } from './audit.js';
export { loadTokens, type Principal, type Scope, type TokenVerifier } from './auth.js';
export { checkTarget, parseTarget, type Target } from './check.js';
export { DecisionLog, type DecisionRecord } from './decisions.js';
export { PolicyControl } from './policy-control.js';
export { applyChange, enabledApps, etagOf, initialState, parseState, type PolicyChange, type PolicyState } from './state.js';
export { openStore, readStoredState, type PolicyStore, type StoreHealth } from './store/index.js';
