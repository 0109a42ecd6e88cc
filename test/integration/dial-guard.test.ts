import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { DialGuard, connectGuarded } from '../../src/proxy/act/dial-guard.js';
import { rejection } from '../support/rejection.js';

// Loopback only: every address dialled here is 127.0.0.0/8, or is refused before a socket exists.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface CountingServer {
  port: number;
  connections: number;
  remotes: string[];
  /** Resolves at the next accepted connection. */
  nextConnection: () => Promise<void>;
}

/** An echo server on 127.0.0.1 that counts the connections it accepts. */
async function countingServer(): Promise<CountingServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    state.connections++;
    state.remotes.push(socket.remoteAddress ?? '');
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const state: CountingServer = {
    port: (server.address() as AddressInfo).port,
    connections: 0,
    remotes: [],
    nextConnection: () => once(server, 'connection').then(() => undefined),
  };
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
    await once(server, 'close');
  });
  return state;
}


function keep(socket: Socket): Socket {
  socket.on('error', () => socket.destroy());
  cleanups.push(() => {
    socket.destroy();
  });
  return socket;
}

const loopbackAllowed = new DialGuard(['127.0.0.0/8']);

describe('connectGuarded', () => {
  it('refuses 127.0.0.1 without a connection reaching the listening server', async () => {
    const server = await countingServer();
    const guard = new DialGuard([]);
    for (const host of ['127.0.0.1', '::ffff:127.0.0.1', '[::ffff:7f00:1]', '127.0.0.2']) {
      const err = await rejection(connectGuarded({ host, port: server.port, guard, timeoutMs: 1_000 }));
      expect(err.code, host).toBe('PCL_ERR_DIAL_FORBIDDEN');
      expect(err.details, host).toMatchObject({ address: host, port: server.port });
      expect(String(err.details.reason), host).toMatch(/loopback/);
    }
    // A control connection through an allowing guard proves the counter sees connections.
    const arrived = server.nextConnection();
    keep(await connectGuarded({ host: '127.0.0.1', port: server.port, guard: loopbackAllowed, timeoutMs: 1_000 }));
    await arrived;
    expect(server.connections).toBe(1);
  });

  it('refuses a host name even when everything it could resolve to is allow-listed', async () => {
    const server = await countingServer();
    const guard = new DialGuard(['127.0.0.0/8', '::1/128']);
    for (const host of ['localhost', 'localhost.', '127.1', '2130706433']) {
      const err = await rejection(connectGuarded({ host, port: server.port, guard, timeoutMs: 1_000 }));
      expect(err.code, host).toBe('PCL_ERR_DIAL_FORBIDDEN');
      expect(err.details.reason, host).toBe('not an IP address');
    }
    await sleep(50);
    expect(server.connections).toBe(0);
  });

  it('connects for real when 127.0.0.0/8 is allow-listed, and leaves no listener or timer of its own', async () => {
    const server = await countingServer();
    const socket = keep(await connectGuarded({ host: '127.0.0.1', port: server.port, guard: loopbackAllowed, timeoutMs: 100 }));
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(socket.remotePort).toBe(server.port);
    expect(socket.listenerCount('error')).toBe(1); // keep()'s, attached by the caller
    expect(socket.listenerCount('connect')).toBe(0);
    socket.write('ping');
    const [echo] = (await once(socket, 'data')) as [Buffer];
    expect(echo.toString()).toBe('ping');
    // Past the connect timeout the connection is still up: the timer was cleared on connect.
    await sleep(250);
    expect(socket.destroyed).toBe(false);
    expect(server.connections).toBe(1);
  });

  it('dials the IPv4 address of an IPv4-mapped host, and binds localAddress', async () => {
    const server = await countingServer();
    keep(await connectGuarded({ host: '::ffff:127.0.0.1', port: server.port, guard: loopbackAllowed, timeoutMs: 1_000, localAddress: '127.0.0.2' }));
    expect(server.connections).toBe(1);
    expect(server.remotes).toEqual(['127.0.0.2']);
  });

  it('allows only the listed network', async () => {
    const server = await countingServer();
    const guard = new DialGuard(['127.0.0.2/32']);
    const err = await rejection(connectGuarded({ host: '127.0.0.1', port: server.port, guard, timeoutMs: 1_000 }));
    expect(err.code).toBe('PCL_ERR_DIAL_FORBIDDEN');
    await sleep(50);
    expect(server.connections).toBe(0);
  });

  it('fails quickly with PCL_ERR_DIAL_FAILED (refused) on a closed port', async () => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    probe.close();
    await once(probe, 'close');
    const started = performance.now();
    const err = await rejection(connectGuarded({ host: '127.0.0.1', port, guard: loopbackAllowed, timeoutMs: 5_000 }));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(err.code).toBe('PCL_ERR_DIAL_FAILED');
    expect(err.details).toMatchObject({ kind: 'refused', phase: 'connect', upstream: `127.0.0.1:${port}` });
  });

  it('fails with PCL_ERR_DIAL_FAILED (invalid) on a bad port, before connecting', async () => {
    for (const port of [0, 65_536, 1.5, -1]) {
      const err = await rejection(connectGuarded({ host: '127.0.0.1', port, guard: loopbackAllowed, timeoutMs: 1_000 }));
      expect(err.code, String(port)).toBe('PCL_ERR_DIAL_FAILED');
      expect(err.details.kind, String(port)).toBe('invalid');
    }
  });

  it('times out with PCL_ERR_DIAL_FAILED (timeout) when a loopback listener never answers the SYN', async () => {
    // A child process listens with a tiny backlog and then blocks its event loop, so it never
    // accepts. Once its accept queue is full the kernel drops further SYNs: a connect to it hangs
    // in SYN_SENT, on loopback, without a packet leaving the machine.
    const child: ChildProcess = spawn(
      process.execPath,
      [
        '-e',
        `const net = require('node:net'); const fs = require('node:fs');
         const server = net.createServer();
         server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
           fs.writeSync(1, server.address().port + '\\n');
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
    });
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    expect(port).toBeGreaterThan(0);

    // Fill the accept queue: connect until one plain connect does not complete.
    let isQueueFull = false;
    for (let i = 0; i < 32 && !isQueueFull; i++) {
      const filler = keep(connect({ host: '127.0.0.1', port }));
      const outcome = await Promise.race([once(filler, 'connect').then(() => 'connected'), sleep(300).then(() => 'hanging')]);
      isQueueFull = outcome === 'hanging';
    }
    expect(isQueueFull, 'the accept queue of the blocked listener never filled').toBe(true);

    const started = performance.now();
    const err = await rejection(connectGuarded({ host: '127.0.0.1', port, guard: loopbackAllowed, timeoutMs: 250 }));
    const elapsed = performance.now() - started;
    expect(err.code).toBe('PCL_ERR_DIAL_FAILED');
    expect(err.details).toMatchObject({ kind: 'timeout', phase: 'connect' });
    expect(elapsed).toBeGreaterThanOrEqual(240);
    expect(elapsed).toBeLessThan(900); // well before the first SYN retransmit (1 s) could succeed
  });
});
