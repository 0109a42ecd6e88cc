import { execFile, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from '../support/gateway-process.js';

/**
 * What `validate` accepts, `start` starts; what it refuses, `start` refuses too, for the same
 * reason: every fixture under test/fixtures/configs/ (named ok-* or bad-*) is run through both.
 * The files next to them (a token, a certificate and its key, another key) are made here.
 */
const execFileAsync = promisify(execFile);
const FIXTURES = fileURLToPath(new URL('../fixtures/configs/', import.meta.url));
const FIXTURE_NAMES = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).sort();
let dir = '';

/** `start` on `config`: whether it came up (logged "portcullis started"), and what it printed. */
function start(config: string): Promise<{ isUp: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'start', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let isUp = false;
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('"msg":"portcullis started"')) {
        isUp = true;
        child.kill('SIGTERM');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ isUp, code, stderr });
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-validate-'));
  await cp(FIXTURES, dir, { recursive: true });
  const openssl = (args: string[]) => execFileAsync('openssl', args);
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=dns.test', '-days', '1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', join(dir, 'other-key.pem')]);
  await writeFile(join(dir, 'token.txt'), 'token-from-a-file-0123456789\n');
  await writeFile(join(dir, 'short-token.txt'), 'too-short\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('validate predicts start', () => {
  it('there are fixtures of both kinds', () => {
    expect(FIXTURE_NAMES.filter((f) => f.startsWith('ok-')).length).toBeGreaterThanOrEqual(5);
    expect(FIXTURE_NAMES.filter((f) => f.startsWith('bad-')).length).toBeGreaterThanOrEqual(10);
  });

  it.each(FIXTURE_NAMES)('%s', async (name) => {
    const config = join(dir, name);
    const validated = runCli(['validate', '--config', config]);
    const started = await start(config);
    const isValid = validated.code === 0;
    expect({ name, isValid, isUp: started.isUp }).toEqual({ name, isValid: name.startsWith('ok-'), isUp: isValid });
    if (!isValid) {
      // Both say why, naming the file: the same problems, the same words.
      expect(validated.stderr).toContain(name);
      expect(started.code).toBe(1);
      const problemLines = validated.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('warning:'));
      for (const line of problemLines) expect(started.stderr).toContain(line);
    }
  }, 30_000);
});

describe('what validate says', () => {
  it('names every problem of a file at once: schema and semantic, with the nearest known key', () => {
    const result = runCli(['validate', '--config', join(dir, 'bad-several-problems.yaml')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('(dns.blockMod): unknown key; did you mean "blockMode"?');
    expect(result.stderr).toContain('(proxy.idleTimeout)');
    expect(result.stderr).toContain('(proxy.http.listen): listening on 0.0.0.0 reaches beyond private networks');
  });

  it('a YAML syntax error: the line where the list was opened, and a code', () => {
    const result = runCli(['validate', '--config', join(dir, 'bad-yaml-syntax.yaml')]);
    expect(result.stderr).toMatch(/bad-yaml-syntax\.yaml:4: PCL_ERR_CONFIG_PARSE: YAML syntax error \(\w+\)/);
  });

  it('an unquoted null block mode says to write nullip', () => {
    expect(runCli(['validate', '--config', join(dir, 'bad-blockmode-yaml-null.yaml')]).stderr).toContain('write nullip');
  });

  it('a list line the gateway skips is a warning with file:line, and the file is valid', () => {
    const result = runCli(['validate', '--config', join(dir, 'ok-list-with-skipped-line.yaml')]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/warning: .*adblock-with-path\.txt:2: skipped, not a rule/);
    expect(result.stdout).toMatch(/^valid: .*\(1 warning\)/);
  });

  it('a key that does not belong to its certificate is named', () => {
    expect(runCli(['validate', '--config', join(dir, 'bad-dot-key-mismatch.yaml')]).stderr).toMatch(/\(dns\.tls\.key\): PCL_ERR_CONFIG_INVALID/);
  });
});
