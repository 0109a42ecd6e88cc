import { ApiError, call, explain, storeToken, storedToken, type AppInfo, type CatalogStatus, type Rule, type Who } from './api.js';
import { lineChart } from './chart.js';

/** The web console: sign-in, then Apps, Rules, Check and Activity views (hash routes). */

let who: Who | null = null;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, string>> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) if (value !== undefined) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`#${id} missing from index.html`);
  return node;
}

function status(text: string, isError = false): void {
  const node = byId('status');
  node.textContent = text;
  node.className = isError ? 'error' : '';
}

function canWrite(): boolean {
  return who?.scopes.includes('write') === true;
}

function show(...children: Node[]): void {
  byId('view').replaceChildren(...children);
}

// ---- sign-in --------------------------------------------------------------------------------

function signInView(message = ''): void {
  byId('nav').hidden = true;
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', required: '' });
  const form = el('form', { 'aria-label': 'Sign in' }, el('label', { for: 'token' }, 'API token', input), el('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    storeToken(input.value.trim());
    void start();
  });
  status(message, message !== '');
  show(el('h2', {}, 'Sign in'), el('p', {}, 'Use a token from admin.tokens. It is kept for this browser tab only.'), form);
  input.focus();
}

// ---- apps -----------------------------------------------------------------------------------

function appCard(app: AppInfo): HTMLElement {
  const toggle = el('input', { type: 'checkbox', role: 'switch', id: `switch-${app.id}` });
  toggle.checked = app.enabled;
  toggle.disabled = !canWrite();
  const stateText = el('span', { id: `state-${app.id}` }, app.enabled ? 'Blocked' : 'Not blocked');
  toggle.addEventListener('change', () => {
    const wanted = toggle.checked;
    // The card shows the new state only once the API confirmed it.
    toggle.checked = !wanted;
    toggle.disabled = true;
    status(`${wanted ? 'Blocking' : 'Unblocking'} ${app.name}…`);
    call<AppInfo>('PATCH', `/v1/apps/${app.id}`, { enabled: wanted })
      .then(({ body }) => {
        toggle.checked = body.enabled;
        stateText.textContent = body.enabled ? 'Blocked' : 'Not blocked';
        status(`${app.name} is ${body.enabled ? 'blocked' : 'no longer blocked'}.`);
      })
      .catch((e: unknown) => status(explain(e), true))
      .finally(() => (toggle.disabled = !canWrite()));
  });
  return el(
    'article',
    { class: 'card', 'data-app': app.id },
    el('h2', {}, app.name),
    el('div', { class: 'id' }, app.id),
    el('label', { class: 'switch', for: `switch-${app.id}` }, toggle, stateText),
    el(
      'dl',
      {},
      el('dt', {}, 'Domains'),
      el('dd', {}, String(app.rules.domains)),
      el('dt', {}, 'Networks'),
      el('dd', {}, String(app.rules.cidrs)),
      el('dt', {}, 'Ports'),
      el('dd', {}, String(app.rules.ports)),
      el('dt', {}, 'Blocks, last hour'),
      el('dd', {}, String(app.blocksLastHour ?? 0)),
    ),
    ...(app.coverageNote === null ? [] : [el('p', { class: 'id' }, app.coverageNote)]),
  );
}

async function appsView(): Promise<void> {
  const [{ body: apps }, catalog] = await Promise.all([
    call<AppInfo[]>('GET', '/v1/apps'),
    // The apps stay usable when only the catalog status cannot be read; a refused token still signs out.
    call<CatalogStatus>('GET', '/v1/catalog').then(
      ({ body }) => body,
      (e: unknown) => {
        if (e instanceof ApiError && e.status === 401) throw e;
        return explain(e);
      },
    ),
  ]);
  show(el('h2', {}, 'Apps'), catalogSection(catalog), el('div', { class: 'cards' }, ...apps.map(appCard)));
}

// ---- catalog --------------------------------------------------------------------------------

/** An API time (ISO 8601) to the minute, in UTC like the API and the logs. */
function when(iso: string): string {
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? iso : `${time.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

function catalogLine(catalog: CatalogStatus): string {
  const { updates } = catalog;
  if (catalog.origin === 'bundled') {
    const checked = updates?.lastCheck == null ? '' : `, last checked ${when(updates.lastCheck)}`;
    return `Catalog ${catalog.version} — bundled with this build${updates === null ? '' : `; updates from ${updates.url}${checked}`}.`;
  }
  const isFleet = catalog.receivedVia === 'fleet';
  const source = isFleet ? 'signed bundle shared by the fleet' : `signed bundle from ${updates?.url ?? 'a download'}`;
  const received = catalog.receivedAt === null ? '' : `, ${isFleet ? 'received' : 'downloaded'} ${when(catalog.receivedAt)}`;
  const expires = catalog.expires === null ? '' : `, ${catalog.isExpired ? 'expired' : 'expires'} ${when(catalog.expires)}`;
  return `Catalog ${catalog.version} — ${source}${received}${expires}.`;
}

/** What a refresh did, for the status line; true when it went wrong. */
function refreshOutcome(result: string, catalog: CatalogStatus): [string, boolean] {
  switch (result) {
    case 'applied':
      return [`Catalog ${catalog.version} is now in force.`, false];
    case 'unchanged':
      return [`No newer catalog: version ${catalog.version} stays in force.`, false];
    default:
      // The reason is in the warning line the view shows again.
      return [`Catalog update not applied (${result}); version ${catalog.version} stays in force.`, true];
  }
}

function catalogSection(catalog: CatalogStatus | string): HTMLElement {
  if (typeof catalog === 'string') return el('div', { id: 'catalog' }, el('p', { id: 'catalog-status', class: 'warning' }, `Catalog status unavailable: ${catalog}`));
  const line = el('div', { class: 'catalog-line' }, el('p', { id: 'catalog-status', 'data-version': String(catalog.version), 'data-origin': catalog.origin }, catalogLine(catalog)));
  const warnings: HTMLElement[] = [];
  const updates = catalog.updates;
  if (updates?.lastError != null) {
    const verb = updates.lastResult === 'fetch-failed' ? 'failed' : 'refused';
    warnings.push(
      el('p', { id: 'catalog-warning', class: 'warning', 'data-result': updates.lastResult ?? '' }, `Last catalog update ${verb} (${updates.lastResult ?? 'unknown'}): ${updates.lastError}; version ${catalog.version} stays in force.`),
    );
  }
  if (catalog.isExpired) {
    warnings.push(
      el('p', { id: 'catalog-expired', class: 'warning' }, `The catalog bundle has expired${catalog.expires === null ? '' : ` (${when(catalog.expires)})`}; version ${catalog.version} stays in force until a newer bundle loads.`),
    );
  }
  if (canWrite() && updates !== null) {
    const refresh = el('button', { type: 'button', id: 'catalog-refresh' }, 'Check for catalog update');
    refresh.addEventListener('click', () => {
      refresh.disabled = true;
      status('Checking for a catalog update…');
      call<{ result: string; catalog: CatalogStatus }>('POST', '/v1/catalog/refresh')
        .then(async ({ body }) => {
          // Shown again first (a new catalog changes the cards too), unless another view was opened meanwhile.
          if (currentRoute() === '#/apps') await appsView();
          const [text, isError] = refreshOutcome(body.result, body.catalog);
          status(text, isError);
        })
        .catch((e: unknown) => status(explain(e), true))
        .finally(() => (refresh.disabled = false));
    });
    line.append(refresh);
  }
  return el('div', { id: 'catalog' }, line, ...warnings);
}

// ---- rules ----------------------------------------------------------------------------------

const VALUE_CHECKS: Record<Rule['type'], { pattern: RegExp; hint: string }> = {
  domain: {
    pattern: /^((\*\.)|([a-z0-9_-]*\*[a-z0-9_-]*\.))?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i,
    hint: 'a host name such as example.com (subdomains included), or a label pattern such as cdn-*.example.com',
  },
  cidr: { pattern: /^([0-9.]+|[0-9a-f:]+)(\/[0-9]{1,3})?$/i, hint: 'an address or network such as 147.92.128.0/17' },
  port: { pattern: /^((tcp|udp)\/)?[0-9]{1,5}(-[0-9]{1,5})?$/i, hint: 'tcp/N, udp/N, tcp/N-M, or N for TCP and UDP' },
};

async function rulesView(): Promise<void> {
  const { body: rules, etag } = await call<Rule[]>('GET', '/v1/rules');
  const filter = el('input', { id: 'rule-filter', type: 'search' });
  const rows = el('tbody');
  const render = (): void => {
    const needle = filter.value.trim().toLowerCase();
    const shown = rules.filter((r) => needle === '' || [r.id, r.value, r.app ?? '', r.comment ?? '', r.type, r.action].some((f) => f.toLowerCase().includes(needle)));
    rows.replaceChildren(...shown.map(ruleRow));
    if (shown.length === 0) rows.append(el('tr', {}, el('td', { colspan: '7' }, rules.length === 0 ? 'No rules yet.' : 'No rule matches the filter.')));
  };
  filter.addEventListener('input', render);
  render();
  const table = el(
    'table',
    { 'aria-label': 'Rules' },
    el('thead', {}, el('tr', {}, ...['Id', 'Action', 'Type', 'Value', 'App', 'Comment', ''].map((h) => el('th', { scope: 'col' }, h)))),
    rows,
  );
  show(el('h2', {}, 'Rules'), ...(canWrite() ? [addRuleForm(etag)] : []), el('label', { for: 'rule-filter' }, 'Filter', filter), table);
}

function ruleRow(rule: Rule): HTMLTableRowElement {
  const cells = [rule.id, rule.action, rule.type, rule.value, rule.app ?? '—', rule.comment ?? ''].map((text) => el('td', {}, text));
  const actions = el('td');
  if (canWrite()) {
    const remove = el('button', { type: 'button', class: 'danger', 'aria-label': `Delete rule ${rule.id}` }, 'Delete');
    remove.addEventListener('click', () => {
      // A second, explicit click confirms: no modal dialog to get lost behind.
      const confirm = el('button', { type: 'button', class: 'danger', 'aria-label': `Confirm deleting rule ${rule.id}` }, `Delete ${rule.value}?`);
      const cancel = el('button', { type: 'button' }, 'Keep');
      cancel.addEventListener('click', () => actions.replaceChildren(remove));
      confirm.addEventListener('click', () => {
        call('DELETE', `/v1/rules/${rule.id}`)
          // The list is shown again first: the status must not announce what it does not show yet.
          .then(() => rulesView())
          .then(() => status(`Rule ${rule.id} deleted.`))
          .catch((e: unknown) => status(e instanceof ApiError && e.status === 404 ? 'That rule was already removed elsewhere. Reload the page.' : explain(e), true));
      });
      actions.replaceChildren(confirm, cancel);
      confirm.focus();
    });
    actions.append(remove);
  }
  return el('tr', { 'data-rule': rule.id }, ...cells, actions);
}

function addRuleForm(rulesEtag: string | null): HTMLFormElement {
  const type = el('select', { id: 'rule-type' }, ...(['domain', 'cidr', 'port'] as const).map((t) => el('option', { value: t }, t)));
  const value = el('input', { id: 'rule-value', required: '', maxlength: '300' });
  const action = el('select', { id: 'rule-action' }, el('option', { value: 'block' }, 'block'), el('option', { value: 'allow' }, 'allow'));
  const comment = el('input', { id: 'rule-comment', maxlength: '500' });
  const form = el(
    'form',
    { 'aria-label': 'Add a rule' },
    el('label', { for: 'rule-type' }, 'Type', type),
    el('label', { for: 'rule-value' }, 'Value', value),
    el('label', { for: 'rule-action' }, 'Action', action),
    el('label', { for: 'rule-comment' }, 'Comment', comment),
    el('button', { type: 'submit' }, 'Add rule'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const kind = type.value as Rule['type'];
    const check = VALUE_CHECKS[kind];
    if (!check.pattern.test(value.value.trim())) {
      status(`The value must be ${check.hint}.`, true);
      value.focus();
      return;
    }
    const body = { type: kind, value: value.value.trim(), action: action.value, ...(comment.value.trim() === '' ? {} : { comment: comment.value.trim() }) };
    call<Rule>('POST', '/v1/rules', body, rulesEtag === null ? {} : { 'if-match': rulesEtag })
      .then(async ({ body: rule }) => {
        await rulesView();
        status(`Rule ${rule.id} added: ${rule.action} ${rule.value}.`);
      })
      .catch((e: unknown) => status(explain(e), true));
  });
  return form;
}

// ---- check ----------------------------------------------------------------------------------

interface CheckBody {
  verdict: string;
  app: string | null;
  rule: string | null;
  layer: string;
  chain?: { kind: string; target: string; qtype: string | null; verdict: string; app: string | null; rule: string | null }[];
  answers?: { qtype: string; rcode: string | null; error: string | null; verdict: string; rule: string | null }[];
}

const ADDRESS = /^\[?[0-9a-f:.]+\]?(:[0-9]+)?$/i;

function checkView(): void {
  const input = el('input', { id: 'check-target', required: '', placeholder: 'talk.kakao.com or 147.92.150.1:443' });
  const resolve = el('input', { id: 'check-resolve', type: 'checkbox', checked: '' });
  const result = el('div', { id: 'check-result', 'aria-live': 'polite' });
  const form = el(
    'form',
    { 'aria-label': 'Check a name or address' },
    el('label', { for: 'check-target' }, 'Name or IP[:port]', input),
    el('label', { for: 'check-resolve', class: 'inline' }, resolve, 'Follow the DNS resolution (CNAME chain and addresses)'),
    el('button', { type: 'submit' }, 'Check'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const target = input.value.trim();
    const follow = resolve.checked && !ADDRESS.test(target);
    call<CheckBody>('GET', `/v1/check?target=${encodeURIComponent(target)}${follow ? '&resolve=1' : ''}`)
      .then(({ body }) => {
        const verdict = el('p', {}, el('span', { class: `verdict-${body.verdict}` }, body.verdict === 'block' ? 'Blocked' : 'Allowed'), ` — ${body.rule === null ? 'no rule matches' : `${body.app ?? 'custom rule'}, ${body.rule} (${body.layer} layer)`}`);
        const chain = body.chain ?? [];
        const answers = body.answers ?? [];
        result.replaceChildren(
          verdict,
          ...(chain.length === 0
            ? []
            : [
                el(
                  'table',
                  { 'aria-label': 'Resolution' },
                  el('thead', {}, el('tr', {}, ...['Step', 'Name or address', 'Answer', 'Verdict', 'Rule'].map((h) => el('th', { scope: 'col' }, h)))),
                  el(
                    'tbody',
                    {},
                    ...chain.map((step) =>
                      el('tr', {}, ...[step.kind, step.target, step.qtype ?? '', step.verdict, step.rule === null ? '' : `${step.app ?? 'custom'} ${step.rule}`].map((t) => el('td', {}, t))),
                    ),
                  ),
                ),
                el('p', { class: 'legend' }, answers.map((a) => `${a.qtype}: ${a.rcode ?? `no answer (${a.error ?? 'upstream failed'})`}, ${a.verdict === 'block' ? 'blocked' : 'allowed'}`).join('; ')),
              ]),
        );
        status('');
      })
      .catch((e: unknown) => status(explain(e), true));
  });
  show(el('h2', {}, 'Check'), form, result);
}

// ---- activity -------------------------------------------------------------------------------

async function activityView(): Promise<void> {
  const [decisions, activity, policy] = await Promise.all([
    call<{ time: string; layer: string; app: string | null; rule: string | null; name: string | null }[]>('GET', '/v1/decisions?limit=50'),
    call<{ points: { time: string; queriesPerSecond: number; blocksPerSecond: number }[] }>('GET', '/v1/activity?minutes=15'),
    call<{ version: number; restartPending: string[]; store: { kind: string; isHealthy: boolean; reason: string | null } }>('GET', '/v1/policy'),
  ]);
  const points = activity.body.points;
  const store = policy.body.store;
  show(
    el('h2', {}, 'Activity'),
    el('p', { id: 'policy-state' }, `Policy version ${policy.body.version}; store: ${store.kind}, ${store.isHealthy ? 'healthy' : `unavailable — ${store.reason ?? ''}`}.`),
    ...(policy.body.restartPending.length === 0 ? [] : [el('p', { id: 'restart-pending', class: 'warning' }, `Restart pending: ${policy.body.restartPending.join(', ')} changed in the configuration and take effect after a restart.`)]),
    el('p', { class: 'legend' }, el('span', { class: 'q' }, '— queries/s'), el('span', { class: 'b' }, '— blocks/s'), `last 15 minutes, ${points.length} samples`),
    lineChart({ queries: points.map((p) => p.queriesPerSecond), blocks: points.map((p) => p.blocksPerSecond) }, 'Queries and blocks per second over the last 15 minutes'),
    el('h3', {}, 'Recent blocks'),
    el(
      'table',
      { 'aria-label': 'Recent blocks' },
      el('thead', {}, el('tr', {}, ...['Time', 'App', 'Layer', 'Name', 'Rule'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ...decisions.body.map((d) => el('tr', {}, ...[new Date(d.time).toLocaleTimeString(), d.app ?? 'custom', d.layer, d.name ?? '', d.rule ?? ''].map((t) => el('td', {}, t))))),
    ),
  );
}

// ---- routing --------------------------------------------------------------------------------

const ROUTES: Record<string, () => Promise<void> | void> = { '#/apps': appsView, '#/rules': rulesView, '#/check': checkView, '#/activity': activityView };

function currentRoute(): string {
  return location.hash in ROUTES ? location.hash : '#/apps';
}

async function route(): Promise<void> {
  if (who === null) return;
  const hash = currentRoute();
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === hash) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    await ROUTES[hash]!();
  } catch (e: unknown) {
    if (e instanceof ApiError && e.status === 401) {
      storeToken(null);
      who = null;
      signInView(explain(e));
      return;
    }
    status(explain(e), true);
  }
}

async function start(): Promise<void> {
  if (storedToken() === null) {
    signInView();
    return;
  }
  try {
    who = (await call<Who>('GET', '/v1/whoami')).body;
  } catch (e: unknown) {
    storeToken(null);
    signInView(explain(e));
    return;
  }
  byId('nav').hidden = false;
  byId('who').textContent = `${who.name} (${canWrite() ? 'can edit' : 'read only'})`;
  status('');
  await route();
}

document.addEventListener('DOMContentLoaded', () => {
  byId('sign-out').addEventListener('click', () => {
    storeToken(null);
    who = null;
    location.hash = '';
    signInView('Signed out.');
  });
  window.addEventListener('hashchange', () => void route());
  void start();
});
