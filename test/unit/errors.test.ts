import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, PortcullisError, formatLocation } from '../../src/errors.js';

describe('error codes', () => {
  it('every code is documented in docs/errors.md, and the doc lists no code that does not exist', async () => {
    const doc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    for (const code of ERROR_CODES) expect(doc, code).toContain(`\`${code}\``);
    const documented = [...doc.matchAll(/`(PCL_ERR_[A-Z_]+)`/g)].map((m) => m[1]);
    for (const code of documented) expect(ERROR_CODES as readonly string[]).toContain(code);
  });

  it('carries code, details and cause', () => {
    const cause = new Error('inner');
    const err = new PortcullisError('PCL_ERR_INVALID_CIDR', 'bad', { cause, details: { input: 'x' } });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('PCL_ERR_INVALID_CIDR');
    expect(err.details).toEqual({ input: 'x' });
    expect(err.cause).toBe(cause);
  });

  it('formats locations as file:line (field)', () => {
    expect(formatLocation({ file: 'a.yaml', line: 3, field: 'dns.listen' })).toBe('a.yaml:3 (dns.listen)');
    expect(formatLocation({ file: 'env PORTCULLIS_DNS_LISTEN', field: 'dns.listen' })).toBe('env PORTCULLIS_DNS_LISTEN (dns.listen)');
  });
});
