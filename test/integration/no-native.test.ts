import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simpleHello } from '../support/client-hello.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { resolveA, runCli, startGateway, writeGatewayConfig, type GatewayProcess } from '../support/gateway-process.js';

/**
 * Where the native addon cannot be built (or is turned off), the gateway still runs: DNS over
 * UDP through Node's dgram, the explicit proxy as everywhere; only the transparent listeners,
 * which need it, are refused by validate and start alike, naming the key.
 */
const NO_NATIVE = { PORTCULLIS_NO_NATIVE: '1' };
let dir = '';
let upstream: FakeUpstream;
let gateway: GatewayProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portcullis-no-native-'));
  upstream = await startFakeUpstream({ 'allowed.test': [{ type: 'A', value: '192.0.2.7' }] });
  const home = join(dir, 'gateway');
  await mkdir(home, { recursive: true });
  gateway = await startGateway(await writeGatewayConfig(home, { upstream: upstream.target }), [], 15_000, [], NO_NATIVE);
});

afterAll(async () => {
  expect(await gateway.stop()).toBe(0);
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe('without the native addon', () => {
  it('answers DNS over UDP through dgram, blocking and resolving', async () => {
    const listening = gateway.logs.find((l) => l.msg === 'dns listening');
    expect(listening?.udpIo).toBe('dgram');
    expect((await resolveA(gateway.dnsPort, 'allowed.test'))?.addresses).toEqual(['192.0.2.7']);
    expect((await resolveA(gateway.dnsPort, 'talk-pilsner.kakao.com'))?.rcode).toBe(3);
  });

  it('runs the explicit proxy: a blocked SNI gets the handshake_failure alert', async () => {
    const received = await new Promise<Buffer>((resolve) => {
      const socket = connect(gateway.tlsPort, '127.0.0.1');
      let data = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => (data = Buffer.concat([data, chunk])));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(data));
      socket.write(simpleHello('talk-pilsner.kakao.com'));
    });
    expect(received[0]).toBe(0x15);
  });

  it('validate and start both refuse transparent listeners, naming the key', async () => {
    const config = join(dir, 'transparent.yaml');
    await writeFile(config, `proxy:\n  transparent: { tcp: 127.0.0.1:0 }\nstore: { path: ${join(dir, 'data-t')} }\n`);
    for (const command of ['validate', 'start']) {
      const result = runCli([command, '--config', config], NO_NATIVE);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('(proxy.transparent): transparent listeners need the native addon');
      expect(result.stderr).toContain('PORTCULLIS_NO_NATIVE');
    }
  });
});
