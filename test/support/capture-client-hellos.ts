/**
 * Captures real ClientHellos from node:tls into test/fixtures/client-hello/: a local TCP server
 * records the first bytes a TLS client sends and closes. Run once, commit the .bin files:
 *
 *   npx tsx test/support/capture-client-hellos.ts
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { connect, type ConnectionOptions } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { readClientHello } from '../../src/proxy/inspect/client-hello.js';

const DIR = fileURLToPath(new URL('../fixtures/client-hello/', import.meta.url));

/** The bytes node:tls sends first with these options (the whole hello: read until it is complete). */
export async function captureHello(options: ConnectionOptions): Promise<Buffer> {
  let resolveBytes: (bytes: Buffer) => void = () => undefined;
  const captured = new Promise<Buffer>((resolve) => {
    resolveBytes = resolve;
  });
  const server = createServer((socket: Socket) => {
    let bytes = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      if (readClientHello(bytes, 1 << 20).kind !== 'need-more') {
        resolveBytes(bytes);
        socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false, ...options });
  client.on('error', () => undefined);
  const bytes = await captured;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return bytes;
}

export const CAPTURES: Record<string, ConnectionOptions> = {
  'node-sni.bin': { servername: 'allowed.test' },
  'node-blocked-sni.bin': { servername: 'talk-pilsner.kakao.com' },
  'node-mixed-case-sni.bin': { servername: 'Talk-Pilsner.KAKAO.com' },
  'node-trailing-dot-sni.bin': { servername: 'legy-jp.line-apps.com.' },
  // Connecting by IP address without a servername: node:tls sends no SNI.
  'node-no-sni.bin': {},
  'node-alpn.bin': { servername: 'allowed.test', ALPNProtocols: ['h2', 'http/1.1'] },
};

async function main(): Promise<void> {
  await mkdir(DIR, { recursive: true });
  for (const [file, options] of Object.entries(CAPTURES)) {
    const bytes = await captureHello(options);
    await writeFile(`${DIR}${file}`, bytes);
    process.stdout.write(`${file}: ${bytes.length} bytes\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
