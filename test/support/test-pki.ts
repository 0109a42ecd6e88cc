import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface TestPki {
  /** The CA certificate (PEM file): what a client trusts. */
  ca: string;
  /** A server certificate signed by the CA, for the names given, and its key. */
  cert: string;
  key: string;
}

/**
 * A private CA and one server certificate it signed, made with openssl in `dir`. `names` go into
 * subjectAltName: host names as DNS entries, addresses as IP entries.
 */
export async function makeTestPki(dir: string, names: string[]): Promise<TestPki> {
  const pki = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  const caKey = join(dir, 'ca.key');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await execFileAsync('openssl', ['req', '-x509', ...curve, '-subj', '/CN=portcullis test CA', '-days', '2', '-keyout', caKey, '-out', pki.ca]);
  await execFileAsync('openssl', ['req', '-new', ...curve, '-subj', `/CN=${names[0] ?? 'server'}`, '-keyout', pki.key, '-out', csr]);
  const san = names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  await writeFile(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
  await execFileAsync('openssl', ['x509', '-req', '-in', csr, '-CA', pki.ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', pki.cert]);
  return pki;
}
