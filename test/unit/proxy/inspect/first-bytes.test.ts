import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { classifyFirstBytes, sniffFirstBytes } from '../../../../src/proxy/inspect/first-bytes.js';
import { DEADLINE_REASON, SocketReader } from '../../../../src/proxy/inspect/socket-reader.js';

describe('classifyFirstBytes', () => {
  it.each([
    ['\x16\x03\x01', 'tls'],
    ['GET / HTTP/1.1\r\n', 'http'],
    ['M-SEARCH * HTTP/1.1', 'http'],
    ['PROPFIND ', 'http'],
    ['G', 'need-more'],
    ['GET', 'need-more'],
    ['get / HTTP/1.1', 'other'],
    [' GET', 'other'],
    ['\x00\x00\x00\x10LOCO', 'other'],
    ['SSH-2.0-OpenSSH', 'other'],
    ['ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'other'],
  ])('%j is %s', (text, kind) => {
    expect(classifyFirstBytes(Buffer.from(text, 'latin1'))).toBe(kind);
  });
});

describe('sniffFirstBytes', () => {
  let server: Server | null = null;
  const clients: Socket[] = [];
  afterEach(async () => {
    for (const c of clients) c.destroy();
    await new Promise<void>((resolve) => (server === null ? resolve() : server.close(() => resolve())));
    server = null;
  });

  /** A connected pair: what the client writes, the returned server side reads. */
  async function pair(): Promise<{ client: Socket; accepted: Socket }> {
    const accepted = new Promise<Socket>((resolve) => {
      server = createServer({ pauseOnConnect: true }, resolve).listen(0, '127.0.0.1');
    });
    await new Promise((resolve) => server!.once('listening', resolve));
    const address = server!.address() as { port: number };
    const client = connect(address.port, '127.0.0.1');
    clients.push(client);
    const socket = await accepted;
    clients.push(socket);
    return { client, accepted: socket };
  }

  const readAll = (socket: Socket): Promise<string> =>
    new Promise((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('end', () => resolve(text));
      socket.resume();
    });

  /** A deadline signal, as a Connection's deadline() gives one. */
  const after = (ms: number): AbortSignal => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(DEADLINE_REASON), ms);
    return controller.signal;
  };

  it('a method dripped a byte at a time past the first-data wait is still read as HTTP, and every byte stays buffered', async () => {
    const { client, accepted } = await pair();
    const reader = new SocketReader(accepted);
    const sniffed = sniffFirstBytes(reader, { firstData: after(50), classify: () => after(2_000) });
    client.write('G');
    for (const piece of ['E', 'T', ' / HTTP/1.1\r\n\r\n']) {
      await new Promise((resolve) => setTimeout(resolve, 80));
      client.write(piece);
    }
    expect(await sniffed).toBe('http');
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.end();
    const rest = reader.detach();
    expect(rest.toString('latin1') + (await readAll(accepted))).toBe('GET / HTTP/1.1\r\n\r\n');
  });

  it('silence is a timeout (server-first protocols); a method that never completes is incomplete', async () => {
    const quiet = await pair();
    expect(await sniffFirstBytes(new SocketReader(quiet.accepted), { firstData: after(50), classify: () => after(100) })).toBe('timeout');
    const stalled = await pair();
    stalled.client.write('POS');
    expect(await sniffFirstBytes(new SocketReader(stalled.accepted), { firstData: after(50), classify: () => after(100) })).toBe('incomplete');
  });

  it('a peer that closes first is closed', async () => {
    const { client, accepted } = await pair();
    client.end();
    expect(await sniffFirstBytes(new SocketReader(accepted), { firstData: after(1_000), classify: () => after(1_000) })).toBe('closed');
  });
});
