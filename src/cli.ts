#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { APP_IDS } from './catalog/index.js';
import { catalogCommand, describeCatalog } from './catalog/commands.js';
import { readCatalogUpdates } from './catalog/updater.js';
import { DEFAULTS, loadConfigChecked, type Config, type Problem } from './config/index.js';
import { formatLocation, errorMessage, isPortcullisError } from './errors.js';
import { appViews, checkTarget, parseTarget, type AppView } from './control/index.js';
import { callApi, type ApiTarget } from './control/client.js';
import { UpstreamPool, dohResolverNames, explainResolution, type Resolution } from './dns/index.js';
import { startGateway, loadPolicy } from './gateway.js';
import { preflight } from './preflight.js';
import { createLogger, silentLogger } from './observability/logger.js';
import type { AdminRule, Decision, PolicyEngine } from './policy/index.js';
import { exportNftables } from './policy/nft-export.js';
import { writeFileAtomic } from './util/atomic-file.js';

/** Exit codes (CONTRACT): 0 ok / allowed, 1 error or invalid, 3 blocked. */
const EXIT_OK = 0;
const EXIT_ERROR = 1;
const EXIT_BLOCKED = 3;
const DEFAULT_API_URL = 'http://127.0.0.1:9090';

const USAGE = `usage: portcullis <command> [options]

commands:
  start     [--config FILE]            run the gateway in the foreground (SIGTERM drains, SIGHUP reloads)
  validate  [--config FILE]            check the configuration and list files
  check     TARGET [--config FILE] [--json] [--resolve]
                                       one policy decision: TARGET is a name, an IP, or either with :port
                                       --resolve: follow the name's live resolution through dns.upstreams
                                       as the DNS path does (CNAME chain, addresses, a verdict for each)
                                       exit 0 allowed, 3 blocked, 1 error
  apps      [--config FILE] [--json]   the app catalog: id, name, enabled, rule counts
  apps      enable|disable ID          switch an app on a running gateway (admin API)
  rules     ls [--json]                the admin rules of a running gateway
  rules     add domain|cidr|port VALUE [--action block|allow] [--app ID] [--comment TEXT]
  rules     rm ID
  catalog   build [--dir DIR] [--bundle-version N] [--expires 30d|TIME] [--out FILE]
                                       the catalog directory (default the bundled blocklists/) as a
                                       bundle payload, checked; version from its catalog.yaml
  catalog   sign PAYLOAD --key PRIVATE.pem [--out FILE]
                                       sign a payload with an Ed25519 key (openssl genpkey -algorithm ed25519)
  catalog   verify BUNDLE [--key PUBLIC.pem | --config FILE]
                                       check a signed bundle as the gateway would (signature, catalog, expiry)
  export    nft [--config FILE] [--out FILE]
                                       the IP layer (address and port rules in force) as an nftables
                                       ruleset, for nft -f: stdout, --out, or nftables.file

options:
  --config FILE       configuration file (default: $PORTCULLIS_CONFIG, else ./portcullis.yaml if present)
  --KEY=VALUE         override one setting, e.g. --dns.listen=0.0.0.0:53 (same as PORTCULLIS_DNS_LISTEN)
  --json              machine-readable output
  --recover           start: continue from the last good copy of a corrupt policy store
  --url URL           admin API for apps enable|disable and rules (default: $PORTCULLIS_URL,
                      else http://127.0.0.1:9090)
  --token TOKEN       bearer token for the admin API (default: $PORTCULLIS_TOKEN)
  --help, --version
`;

interface Args {
  command: string | undefined;
  positionals: string[];
  config: string | undefined;
  json: boolean;
  overrides: Record<string, string>;
  help: boolean;
  version: boolean;
  recover: boolean;
  resolve: boolean;
  /** --url, --token, --action, --app, --comment. */
  options: Partial<Record<ValueOption, string>>;
}

const VALUE_OPTIONS = ['url', 'token', 'action', 'app', 'comment', 'out', 'key', 'dir', 'bundle-version', 'expires'] as const;
type ValueOption = (typeof VALUE_OPTIONS)[number];

function isValueOption(key: string): key is ValueOption {
  return (VALUE_OPTIONS as readonly string[]).includes(key);
}

function parseArgs(argv: readonly string[]): Args | string {
  const args: Args = { command: undefined, positionals: [], config: undefined, json: false, overrides: {}, help: false, version: false, recover: false, resolve: false, options: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      args.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '-') {
      if (args.command === undefined) args.command = arg;
      else args.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const key = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const takeValue = (): string | undefined => inline ?? argv[++i];
    switch (key) {
      case 'json':
        args.json = true;
        break;
      case 'help':
        args.help = true;
        break;
      case 'version':
        args.version = true;
        break;
      case 'recover':
        args.recover = true;
        break;
      case 'resolve':
        args.resolve = true;
        break;
      case 'config': {
        const value = takeValue();
        if (value === undefined) return '--config needs a file';
        args.config = value;
        break;
      }
      default: {
        if (isValueOption(key)) {
          const value = takeValue();
          if (value === undefined) return `--${key} needs a value`;
          args.options[key] = value;
          break;
        }
        if (!key.includes('.')) return `unknown option --${key}`;
        const value = takeValue();
        if (value === undefined) return `--${key} needs a value`;
        args.overrides[key] = value;
      }
    }
  }
  return args;
}

function printProblems(problems: readonly Problem[]): void {
  for (const problem of problems) process.stderr.write(`${formatLocation(problem)}: ${problem.message}\n`);
}

async function loadConfigOrReport(args: Args): Promise<Config | null> {
  const { config, problems } = await loadConfigChecked({ file: args.config, overrides: args.overrides });
  if (config === null) {
    printProblems(problems);
    return null;
  }
  return config;
}

async function commandCheck(args: Args): Promise<number> {
  const targetText = args.positionals[0];
  if (targetText === undefined || args.positionals.length > 1) {
    process.stderr.write('usage: portcullis check TARGET [--config FILE] [--json] [--resolve]\n');
    return EXIT_ERROR;
  }
  const target = parseTarget(targetText);
  if (typeof target === 'string') {
    process.stderr.write(`${target}\n`);
    return EXIT_ERROR;
  }
  if (args.resolve && target.name === null) {
    process.stderr.write(`--resolve needs a host name, and ${targetText} is an address\n`);
    return EXIT_ERROR;
  }
  const config = await loadConfigOrReport(args);
  if (config === null) return EXIT_ERROR;
  const { engine } = await loadPolicy(config, silentLogger, { offline: true });
  if (args.resolve && target.name !== null) return checkResolved(targetText, target.name, config, engine, args.json);
  const decision = checkTarget(engine, target);
  printDecision(targetText, decision, args.json);
  return decision.verdict === 'block' ? EXIT_BLOCKED : EXIT_OK;
}

/** check --resolve: the name through the configured upstreams, judged step by step as the DNS path judges it. */
async function checkResolved(targetText: string, name: string, config: Config, engine: PolicyEngine, json: boolean): Promise<number> {
  const ca = config.dns.upstreamCa === null ? null : await readFile(config.dns.upstreamCa, 'utf8');
  const upstream = new UpstreamPool(config.dns.upstreams, { logger: silentLogger, ca });
  let resolution: Resolution;
  try {
    resolution = await explainResolution(name, { policy: engine, upstream, firefoxCanary: config.dns.bypass.firefoxCanary, dohResolvers: dohResolverNames(config.dns.bypass.dohResolvers, engine) });
  } finally {
    await upstream.close();
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ target: targetText, verdict: resolution.verdict, app: resolution.app, rule: resolution.rule, layer: 'dns', chain: resolution.chain, answers: resolution.answers })}\n`);
  } else {
    printDecision(targetText, { verdict: resolution.verdict, app: resolution.app, rule: resolution.rule, layer: 'dns' }, false);
    const label = (step: Resolution['chain'][number]): string => (step.qtype === null ? step.target : `${step.target} (${step.qtype})`);
    const width = Math.max(...resolution.chain.map((step) => label(step).length));
    for (const step of resolution.chain) {
      const why = step.rule === null ? '' : `  ${step.app ?? 'custom'} ${step.rule}`;
      process.stdout.write(`  ${step.kind.padEnd(7)} ${label(step).padEnd(width)}  ${step.verdict}${why}\n`);
    }
    const answers = resolution.answers.map((a) => `${a.qtype} ${a.rcode ?? `no answer (${a.error ?? 'upstream failed'})`}: ${a.verdict === 'block' ? `blocked (${a.rule ?? ''})` : 'allowed'}`);
    process.stdout.write(`  answers: ${answers.join('; ')}\n`);
  }
  if (resolution.verdict === 'block') return EXIT_BLOCKED;
  // Nothing answered and nothing blocked: the DNS path would answer SERVFAIL; that is not "allowed".
  return resolution.answers.every((a) => a.rcode === null) ? EXIT_ERROR : EXIT_OK;
}

async function commandExport(args: Args): Promise<number> {
  if (args.positionals[0] !== 'nft' || args.positionals.length > 1) {
    process.stderr.write('usage: portcullis export nft [--config FILE] [--out FILE]\n');
    return EXIT_ERROR;
  }
  const config = await loadConfigOrReport(args);
  if (config === null) return EXIT_ERROR;
  const { engine } = await loadPolicy(config, silentLogger, { offline: true });
  const { ruleset } = exportNftables(engine.current, { table: config.nftables?.table ?? DEFAULTS.nftablesTable });
  const out = args.options.out ?? config.nftables?.file;
  if (out === undefined || out === '-') process.stdout.write(ruleset);
  else await writeFileAtomic(out, ruleset);
  return EXIT_OK;
}

function printDecision(target: string, decision: Decision, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ target, verdict: decision.verdict, app: decision.app, rule: decision.rule, layer: decision.layer })}\n`);
    return;
  }
  const why = decision.rule === null ? 'no rule matches' : `${decision.app ?? 'custom'} (${decision.rule}, ${decision.layer} layer)`;
  process.stdout.write(`${decision.verdict === 'block' ? 'blocked' : 'allowed'}: ${target}: ${why}\n`);
}

function apiTarget(args: Args): ApiTarget {
  const env = process.env;
  return {
    url: args.options.url ?? (env.PORTCULLIS_URL !== undefined && env.PORTCULLIS_URL !== '' ? env.PORTCULLIS_URL : DEFAULT_API_URL),
    token: args.options.token ?? (env.PORTCULLIS_TOKEN !== undefined && env.PORTCULLIS_TOKEN !== '' ? env.PORTCULLIS_TOKEN : null),
  };
}

/** `apps enable|disable ID`: through the admin API of a running gateway, like any other admin. */
async function commandAppSwitch(args: Args): Promise<number> {
  const [verb, id, ...rest] = args.positionals;
  if (id === undefined || rest.length > 0) {
    process.stderr.write(`usage: portcullis apps ${verb ?? 'enable|disable'} ID [--url URL] [--token TOKEN]\n`);
    return EXIT_ERROR;
  }
  const app = (await callApi(apiTarget(args), 'PATCH', `/v1/apps/${encodeURIComponent(id)}`, { enabled: verb === 'enable' })) as AppView;
  if (args.json) process.stdout.write(`${JSON.stringify(app)}\n`);
  else process.stdout.write(`${app.id}: ${app.enabled ? 'enabled (blocked)' : 'disabled (not blocked)'}\n`);
  return EXIT_OK;
}

/** `rules ls|add|rm`: admin rules through the admin API. */
async function commandRules(args: Args): Promise<number> {
  const [verb, ...rest] = args.positionals;
  const target = apiTarget(args);
  const usage = (): number => {
    process.stderr.write('usage: portcullis rules ls | add domain|cidr|port VALUE [--action block|allow] [--app ID] [--comment TEXT] | rm ID\n');
    return EXIT_ERROR;
  };
  switch (verb) {
    case 'ls': {
      if (rest.length > 0) return usage();
      const rules = (await callApi(target, 'GET', '/v1/rules')) as AdminRule[];
      if (args.json) process.stdout.write(`${JSON.stringify(rules, null, 2)}\n`);
      else for (const r of rules) process.stdout.write(`${[r.id, r.action, r.type, r.value, r.app ?? '-', r.comment ?? ''].join('\t').trimEnd()}\n`);
      return EXIT_OK;
    }
    case 'add': {
      const [type, value, ...extra] = rest;
      if (type === undefined || value === undefined || extra.length > 0) return usage();
      const body = { type, value, action: args.options.action ?? 'block', app: args.options.app ?? null, comment: args.options.comment ?? null };
      const rule = (await callApi(target, 'POST', '/v1/rules', body)) as AdminRule;
      if (args.json) process.stdout.write(`${JSON.stringify(rule)}\n`);
      else process.stdout.write(`added ${rule.id}: ${rule.action} ${rule.type} ${rule.value}\n`);
      return EXIT_OK;
    }
    case 'rm': {
      const [id, ...extra] = rest;
      if (id === undefined || extra.length > 0) return usage();
      await callApi(target, 'DELETE', `/v1/rules/${encodeURIComponent(id)}`);
      process.stdout.write(`removed ${id}\n`);
      return EXIT_OK;
    }
    default:
      return usage();
  }
}

async function commandApps(args: Args): Promise<number> {
  const verb = args.positionals[0];
  if (verb === 'enable' || verb === 'disable') return commandAppSwitch(args);
  if (verb !== undefined) {
    process.stderr.write(`unknown apps command "${verb}": apps [--json] | apps enable|disable ID\n`);
    return EXIT_ERROR;
  }
  const config = await loadConfigOrReport(args);
  if (config === null) return EXIT_ERROR;
  const { catalog, engine } = await loadPolicy(config, silentLogger, { offline: true });
  const rows = appViews(APP_IDS.map((id) => engine.catalog.get(id)!), engine.current);
  if (args.json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
    return EXIT_OK;
  }
  process.stdout.write(`${describeCatalog(catalog.status())}\n\n`);
  const table = [
    ['ID', 'NAME', 'ENABLED', 'DOMAINS', 'CIDRS', 'PORTS', 'COVERAGE'],
    ...rows.map((r) => [
      r.id,
      r.name,
      r.enabled ? (r.extended ? 'yes+extended' : 'yes') : 'no',
      String(r.rules.domains),
      String(r.rules.cidrs),
      String(r.rules.ports),
      r.coverage === 'verified' ? 'verified' : r.coverage === 'partial' ? 'partial *' : 'no verified endpoints *',
    ]),
  ];
  const widths = table[0]!.map((_, col) => Math.max(...table.map((row) => row[col]!.length)));
  for (const row of table) process.stdout.write(`${row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()}\n`);
  process.stdout.write('\nCounts are rules in force (core tier; extended too where enabled).\n');
  for (const row of rows.filter((r) => r.coverageNote !== null)) process.stdout.write(`* ${row.id}: ${row.coverageNote}\n`);
  return EXIT_OK;
}

function commandCatalog(args: Args): Promise<number> {
  const [verb, ...rest] = args.positionals;
  const { dir, out, key, expires } = args.options;
  return catalogCommand(verb, rest, {
    dir,
    out,
    key,
    expires,
    bundleVersion: args.options['bundle-version'],
    configuredKey: async () => {
      const config = await loadConfigOrReport(args);
      if (config?.policy.catalog == null) return null;
      return (await readCatalogUpdates(config.policy.catalog)).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    },
  });
}

async function commandValidate(args: Args): Promise<number> {
  const { config, problems, locate } = await loadConfigChecked({ file: args.config, overrides: args.overrides });
  if (config === null) {
    printProblems(problems);
    return EXIT_ERROR;
  }
  const checked = await preflight(config, locate);
  printProblems(checked.errors);
  for (const warning of checked.warnings) process.stderr.write(`warning: ${formatLocation(warning)}: ${warning.message}\n`);
  if (checked.errors.length > 0) return EXIT_ERROR;
  const warned = checked.warnings.length === 0 ? '' : ` (${checked.warnings.length} warning${checked.warnings.length === 1 ? '' : 's'})`;
  process.stdout.write(`valid: ${config.source}, ${checked.summary}${warned}\n`);
  return EXIT_OK;
}

async function commandStart(args: Args): Promise<number> {
  const { config, problems, locate } = await loadConfigChecked({ file: args.config, overrides: args.overrides });
  if (config === null) {
    printProblems(problems);
    return EXIT_ERROR;
  }
  // The same checks validate makes: what it accepts starts, what it refuses does not.
  const checked = await preflight(config, locate);
  if (checked.errors.length > 0) {
    printProblems(checked.errors);
    return EXIT_ERROR;
  }
  const logger = createLogger({ level: config.log.level });
  for (const warning of checked.warnings) logger.warn({ file: warning.file, line: warning.line }, warning.message);
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: errorMessage(reason) }, 'unhandled rejection (a bug)');
  });
  const gateway = await startGateway(config, logger, { isRecovering: args.recover });
  logger.info({ config: config.source, version: gateway.engine.version, apps: [...gateway.engine.current.apps.enabled] }, 'portcullis started');
  return new Promise<number>((resolve) => {
    // Holds the process open until a stop signal, whatever listeners are configured.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      clearInterval(keepAlive);
      void gateway.close().then(() => {
        resolve(EXIT_OK);
      });
    };
    process.once('SIGTERM', () => {
      stop('SIGTERM');
    });
    process.once('SIGINT', () => {
      stop('SIGINT');
    });
    process.on('SIGHUP', () => {
      void loadConfigChecked({ file: args.config, overrides: args.overrides })
        .then(async ({ config: next, problems }) => {
          if (next === null) {
            logger.error({ problems: problems.map((p) => `${formatLocation(p)}: ${p.message}`) }, 'reload refused: configuration invalid; keeping the running one');
            gateway.metrics.reload('config', false);
            return;
          }
          const summary = await gateway.reload(next);
          gateway.metrics.reload('config', true);
          for (const key of summary.restartPending) logger.warn({ key }, `${key} changed: it takes effect after a restart`);
          for (const key of summary.seedOnly) logger.warn({ key }, `${key} only seeds a new policy store: switch apps through the admin API`);
          logger.info({ version: gateway.engine.version, applied: summary.applied, restartPending: summary.restartPending }, summary.restartPending.length === 0 ? 'reloaded' : 'reloaded; a restart is pending');
        })
        .catch((e: unknown) => {
          logger.error({ err: errorMessage(e) }, 'reload failed; keeping the running configuration');
          gateway.metrics.reload('config', false);
        });
    });
  });
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(`${args}\n\n${USAGE}`);
    return EXIT_ERROR;
  }
  if (args.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return EXIT_OK;
  }
  if (args.help || args.command === undefined || args.command === 'help') {
    process.stdout.write(USAGE);
    return args.command === undefined && !args.help ? EXIT_ERROR : EXIT_OK;
  }
  switch (args.command) {
    case 'start':
      return commandStart(args);
    case 'validate':
      return commandValidate(args);
    case 'check':
      return commandCheck(args);
    case 'apps':
      return commandApps(args);
    case 'rules':
      return commandRules(args);
    case 'export':
      return commandExport(args);
    case 'catalog':
      return commandCatalog(args);
    default:
      process.stderr.write(`unknown command "${args.command}"\n\n${USAGE}`);
      return EXIT_ERROR;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${isPortcullisError(e) ? `${e.code}: ` : ''}${errorMessage(e)}\n`);
    process.exitCode = EXIT_ERROR;
  },
);
