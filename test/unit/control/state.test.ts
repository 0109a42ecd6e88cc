import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { APP_IDS } from '../../../src/catalog/index.js';
import { DecisionLog, applyChange, etagOf, initialState, parseState, type PolicyState } from '../../../src/control/index.js';
import type { BlockEvent } from '../../../src/policy/index.js';
import { FileStore } from '../../../src/control/store/index.js';
import { PortcullisError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/observability/logger.js';

function thrown(run: () => unknown): PortcullisError {
  try {
    run();
  } catch (e: unknown) {
    if (e instanceof PortcullisError) return e;
    throw e;
  }
  throw new Error('expected a PortcullisError');
}

const base = (): PolicyState => initialState(APP_IDS);

describe('applyChange', () => {
  it('moves the version by one per change and normalises rules', () => {
    const added = applyChange(base(), { kind: 'rule-add', rule: { type: 'domain', value: '*.Kakao.COM.', action: 'block' } });
    expect(added.state.version).toBe(2);
    expect(added.after).toEqual({ id: 'r1', type: 'domain', value: 'kakao.com', action: 'block', app: null, comment: null });
    const off = applyChange(added.state, { kind: 'app', app: 'line', enabled: false });
    expect(off).toMatchObject({ state: { version: 3, apps: { line: false } }, before: { app: 'line', enabled: true }, after: { app: 'line', enabled: false } });
    const removed = applyChange(off.state, { kind: 'rule-remove', id: 'r1' });
    expect(removed.state.rules).toEqual([]);
    expect(removed.state.nextRuleId).toBe(2);
  });

  it('refuses a missing rule and invalid values with their codes', () => {
    expect(thrown(() => applyChange(base(), { kind: 'rule-remove', id: 'r9' })).code).toBe('PCL_ERR_NOT_FOUND');
    expect(thrown(() => applyChange(base(), { kind: 'rule-add', rule: { type: 'cidr', value: '10.0.0.1/8', action: 'block' } })).code).toBe('PCL_ERR_INVALID_CIDR');
    expect(thrown(() => applyChange(base(), { kind: 'rule-add', rule: { type: 'port', value: 'tcp/0', action: 'block' } })).code).toBe('PCL_ERR_INVALID_PORT');
    expect(thrown(() => applyChange(base(), { kind: 'rule-add', rule: { type: 'domain', value: 'a.example', action: 'block', app: 'wechat' } })).code).toBe('PCL_ERR_UNKNOWN_APP');
  });

  it('etagOf is equal for equal content and differs otherwise', () => {
    expect(etagOf({ id: 'line', enabled: true })).toBe(etagOf({ id: 'line', enabled: true }));
    expect(etagOf({ id: 'line', enabled: true })).not.toBe(etagOf({ id: 'line', enabled: false }));
  });
});

describe('parseState', () => {
  const valid = JSON.stringify(applyChange(base(), { kind: 'rule-add', rule: { type: 'domain', value: 'a.example', action: 'block' } }).state);

  it('reads back what it wrote', () => {
    expect(parseState(valid, 'f').rules[0]).toMatchObject({ id: 'r1', value: 'a.example' });
  });

  it.each([
    ['not JSON', '{"version": 1', /not JSON/],
    ['a missing app', valid.replace('"line":true,', ''), /apps\.line/],
    ['an unknown app', valid.replace('"vower":true', '"vower":true,"wechat":true'), /apps\.wechat/],
    ['a bad version', valid.replace(/"version":2/, '"version":0'), /version/],
    ['a duplicate rule id', valid.replace(/"rules":\[(.*)\]/, '"rules":[$1,$1]'), /rules\[1\]\.id/],
    ['an invalid rule value', valid.replace('a.example', 'bad..name'), /rules\[0\]/],
  ])('refuses %s with PCL_ERR_STORE_CORRUPT naming the field', (_what, text, field) => {
    const error = thrown(() => parseState(text, '/var/lib/portcullis/policy.json'));
    expect(error.code).toBe('PCL_ERR_STORE_CORRUPT');
    expect(error.message).toMatch(field);
    expect(error.message).toContain('/var/lib/portcullis/policy.json');
  });
});

describe('FileStore', () => {
  it('keeps the previous version beside the current one, and after a crash between the two renames continues from it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-store-'));
    try {
      const store = new FileStore({ dir, logger: silentLogger });
      await store.load(base());
      await store.update((current) => ({ state: applyChange(current, { kind: 'app', app: 'line', enabled: false }).state, result: null }));
      const previous = parseState(await readFile(store.previousPath, 'utf8'), 'prev');
      expect(previous.apps.line).toBe(true);
      expect(parseState(await readFile(store.path, 'utf8'), 'cur').apps.line).toBe(false);

      // The crash window: the current file was renamed to .prev, the new one not yet in place.
      await rename(store.path, store.previousPath);
      const reopened = new FileStore({ dir, logger: silentLogger });
      expect((await reopened.load(base())).apps.line).toBe(false);

      await writeFile(store.path, 'garbage');
      const corrupt = new FileStore({ dir, logger: silentLogger });
      const error = await corrupt.load(base()).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PortcullisError);
      expect((error as PortcullisError).message).toMatch(/--recover/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('DecisionLog', () => {
  const block = (name: string): BlockEvent => ({ layer: 'dns', app: 'line', rule: 'domain:line-apps.com', name, client: '10.0.0.9' });

  it('keeps the newest `capacity` blocks, newest first', () => {
    const log = new DecisionLog(3, false);
    for (const name of ['a', 'b', 'c', 'd']) log.record(block(name));
    expect(log.recent(10).map((d) => d.name)).toEqual(['d', 'c', 'b']);
    expect(log.recent(1).map((d) => d.name)).toEqual(['d']);
  });

  it('shows client addresses only when turned on, and hides names when turned off', () => {
    expect(new DecisionLog(2, false).recent(1)).toEqual([]);
    const plain = new DecisionLog(2, false);
    plain.record(block('x.line-apps.com'));
    expect(plain.recent(1)[0]).not.toHaveProperty('client');
    const withClients = new DecisionLog(2, true);
    withClients.record(block('x.line-apps.com'));
    expect(withClients.recent(1)[0]).toMatchObject({ client: '10.0.0.9', name: 'x.line-apps.com' });
    const withoutNames = new DecisionLog(2, false, false);
    withoutNames.record(block('x.line-apps.com'));
    expect(withoutNames.recent(1)[0]).toMatchObject({ name: null, app: 'line', layer: 'dns' });
  });
});
