import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { UDP_BATCH_SLOT_BYTES, nativeBinding, nativeLoadError } from '../../src/util/native-addon.js';

const binding = nativeBinding();

describe('native addon', () => {
  it.runIf(process.platform === 'linux')('is built on Linux by npm ci', () => {
    expect(nativeLoadError()).toBe('');
    expect(binding).not.toBeNull();
  });

  it.skipIf(binding === null)('refuses bad arguments with a TypeError instead of crashing', () => {
    const b = binding!;
    const batch = new b.UdpBatchSocket(() => undefined);
    expect(() => batch.bind('not-an-address', 53, false)).toThrow(TypeError);
    expect(() => batch.bind('127.0.0.1', 70_000, false)).toThrow(TypeError);
    expect(() => batch.reply(64, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => batch.send(Buffer.alloc(1), '::zz', 53)).toThrow(TypeError);
    batch.close();
    expect(() => batch.bind('127.0.0.1', 0, false)).toThrow(/closed/);
    expect(() => new b.UdpSocket('300.1.1.1', 1, () => undefined)).toThrow(TypeError);
    expect(() => b.originalDestination(-1, 4)).toThrow(/SO_ORIGINAL_DST/);
  });

  it.skipIf(binding === null)('UdpBatchSocket: datagrams up to 64 KiB arrive whole in one batch, answers made during it are sent with it', async () => {
    const b = binding!;
    const sizes = [12, 512, 1232, 4097, 60_000];
    const seen: number[] = [];
    const server = new b.UdpBatchSocket((count) => {
      for (let slot = 0; slot < count; slot++) {
        const length = server.lengths[slot]!;
        const data = server.buffer.subarray(slot * UDP_BATCH_SLOT_BYTES, slot * UDP_BATCH_SLOT_BYTES + length);
        seen.push(length);
        expect(data.every((byte) => byte === (length & 0xff))).toBe(true);
        server.reply(slot, Buffer.from(`got ${length} from port ${server.ports[slot]} family ${server.families[slot]}`));
      }
    });
    server.bind('127.0.0.1', 0, false);
    const { port } = server.address();
    const client = createSocket('udp4');
    const replies: string[] = [];
    client.on('message', (m) => replies.push(m.toString()));
    await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
    const clientPort = client.address().port;
    for (const size of sizes) client.send(Buffer.alloc(size, size & 0xff), port, '127.0.0.1');
    const deadline = Date.now() + 3_000;
    while (replies.length < sizes.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    client.close();
    server.close();
    expect(seen.sort((x, y) => x - y)).toEqual(sizes);
    expect(replies.sort()).toEqual(sizes.map((size) => `got ${size} from port ${clientPort} family 4`).sort());
  });
});
