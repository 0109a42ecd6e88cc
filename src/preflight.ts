import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { loadBundledReleaseChecked } from './catalog/index.js';
import { readCatalogUpdates } from './catalog/updater.js';
import type { Config, Problem } from './config/index.js';
import type { Locate } from './config/yaml-source.js';
import { readTokenSecret } from './control/auth.js';
import { errorMessage, isPortcullisError } from './errors.js';
import { ListManager } from './lists/index.js';
import { silentLogger } from './observability/logger.js';

export interface Preflight {
  /** What would stop `start` (or leave it enforcing less than configured): `validate` fails on these, `start` refuses. */
  errors: Problem[];
  /** Worth knowing, never fatal: list lines that are not rules (skipped, as the gateway skips them). */
  warnings: Problem[];
  /** One line for `validate`'s success message. */
  summary: string;
}

/**
 * Every check `start` makes before it serves, for `validate` and `start` alike, so that what
 * `validate` accepts `start` starts: the catalog (and policy.catalog's key and CA), each admin token (inline, or its file readable
 * and long enough), the DoT/DoH certificate and key (readable, parsed, belonging together), every
 * local list (read by the very loader the gateway uses: a list that cannot be read is an error,
 * a line that is not a rule a warning with file:line), and a writable store directory. Remote
 * lists are not fetched here; the gateway fetches them, and keeps serving without them.
 */
export async function preflight(config: Config, locate: Locate): Promise<Preflight> {
  const errors: Problem[] = [];
  const warnings: Problem[] = [];
  const at = (path: (string | number)[], message: string): Problem => ({ ...locate(path), message });

  const catalog = await loadBundledReleaseChecked();
  errors.push(...catalog.problems);
  if (config.policy.catalog !== null) {
    try {
      await readCatalogUpdates(config.policy.catalog);
    } catch (e: unknown) {
      const field = isPortcullisError(e) && typeof e.details.field === 'string' ? e.details.field.split('.') : ['policy', 'catalog'];
      errors.push(at(field, `PCL_ERR_CONFIG_INVALID: ${errorMessage(e)}`));
    }
    const problem = config.policy.catalog.ca === null ? null : await caProblem(config.policy.catalog.ca);
    if (problem !== null && !errors.some((e) => e.field === 'policy.catalog.ca')) errors.push(at(['policy', 'catalog', 'ca'], problem));
  }

  for (const [i, token] of config.admin.tokens.entries()) {
    try {
      await readTokenSecret(token);
    } catch (e: unknown) {
      const field = isPortcullisError(e) && typeof e.details.field === 'string' ? e.details.field : 'token';
      errors.push(at(['admin', 'tokens', i, field], `PCL_ERR_CONFIG_INVALID: ${errorMessage(e)}`));
    }
  }

  if (config.dns.tls !== null) errors.push(...(await tlsProblems(config.dns.tls, at)));
  if (config.dns.upstreamCa !== null) {
    const problem = await caProblem(config.dns.upstreamCa);
    if (problem !== null) errors.push(at(['dns', 'upstreamCa'], problem));
  }

  const local = config.policy.lists.filter((l) => !l.isRemote);
  const manager = new ListManager(local, { cacheDir: join(config.store.path, 'lists'), logger: silentLogger, offline: true });
  const statuses = await manager.refresh();
  for (const status of statuses) {
    const index = config.policy.lists.findIndex((l) => l.source === status.source);
    if (status.lastError !== null) errors.push(at(['policy', 'lists', index], `PCL_ERR_LIST_READ: ${status.lastError}`));
    for (const skipped of status.firstSkipped) warnings.push({ file: status.source, line: skipped.line, message: `skipped, not a rule (${skipped.reason}): ${skipped.text}` });
    if (status.skipped > status.firstSkipped.length) warnings.push({ file: status.source, message: `${status.skipped - status.firstSkipped.length} more lines skipped` });
  }

  const storeProblem = await writableDirectoryProblem(config.store.path);
  if (storeProblem !== null) errors.push(at(['store', 'path'], storeProblem));

  const remote = config.policy.lists.length - local.length;
  const summary = `catalog version ${catalog.release?.version ?? '?'} of ${catalog.release?.catalog.size ?? 0} apps, ${local.length} local list(s) with ${statuses.reduce((n, s) => n + s.entries, 0)} entries${remote > 0 ? `, ${remote} remote list(s) fetched at start` : ''}`;
  return { errors, warnings, summary };
}

/** The DoT/DoH certificate and key: each readable, each PEM the TLS stack accepts, and the key the certificate's. */
async function tlsProblems(tls: { cert: string; key: string }, at: (path: (string | number)[], message: string) => Problem): Promise<Problem[]> {
  const read = async (field: 'cert' | 'key'): Promise<Buffer | Problem> => {
    try {
      return await readFile(tls[field]);
    } catch (e: unknown) {
      return at(['dns', 'tls', field], `PCL_ERR_CONFIG_INVALID: cannot read ${tls[field]}: ${errorMessage(e)}`);
    }
  };
  const [cert, key] = await Promise.all([read('cert'), read('key')]);
  const unread = [cert, key].filter((x): x is Problem => !Buffer.isBuffer(x));
  if (unread.length > 0 || !Buffer.isBuffer(cert) || !Buffer.isBuffer(key)) return unread;
  try {
    createSecureContext({ cert, key });
    return [];
  } catch (e: unknown) {
    const reason = errorMessage(e);
    const field = /key values mismatch|private key|PEM_read_bio_PrivateKey|DECODER/i.test(reason) && !/certificate/i.test(reason) ? 'key' : 'cert';
    return [at(['dns', 'tls', /mismatch/i.test(reason) ? 'key' : field], `PCL_ERR_CONFIG_INVALID: the certificate ${tls.cert} and key ${tls.key} cannot be used together: ${reason}`)];
  }
}

/** Null when the file holds PEM certificates the TLS stack takes as trust anchors; else why not. */
async function caProblem(path: string): Promise<string | null> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (e: unknown) {
    return `PCL_ERR_CONFIG_INVALID: cannot read ${path}: ${errorMessage(e)}`;
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) return `PCL_ERR_CONFIG_INVALID: ${path} holds no PEM certificate`;
  try {
    createSecureContext({ ca: pem });
    return null;
  } catch (e: unknown) {
    return `PCL_ERR_CONFIG_INVALID: ${path} is not a usable CA bundle: ${errorMessage(e)}`;
  }
}

/** Null when `path` is a directory this process can write, or one it can create; else why not. */
async function writableDirectoryProblem(path: string): Promise<string | null> {
  let existing = path;
  for (;;) {
    try {
      const info = await stat(existing);
      if (!info.isDirectory()) return `PCL_ERR_CONFIG_INVALID: ${existing} is not a directory`;
      await access(existing, constants.W_OK | constants.X_OK);
      return null;
    } catch (e: unknown) {
      const code = e instanceof Error && 'code' in e ? e.code : '';
      if (code !== 'ENOENT') return `PCL_ERR_CONFIG_INVALID: ${existing} is not writable: ${errorMessage(e)}`;
      const parent = dirname(existing);
      if (parent === existing) return `PCL_ERR_CONFIG_INVALID: no existing parent directory for ${path}`;
      existing = parent;
    }
  }
}
