import { createServer, type Server, type Socket } from 'node:net';
import type { ProxyConfig } from '../config/index.js';
import { parseListenAddress } from '../config/address.js';
import { DEFAULTS } from '../config/defaults.js';
import type { AddressResolver, PolicyView } from '../dns/index.js';
import type { Logger } from '../observability/logger.js';
import { ClientSlots } from './client-slots.js';
import type { DialDeps } from './dial.js';
import { DialGuard } from './dial-guard.js';
import { handleHttpConnection } from './http-proxy.js';
import { handleTlsConnection, type ProxyEvents, type ProxyResult } from './tls-proxy.js';

export interface ProxyServerDeps extends ProxyEvents {
  config: ProxyConfig;
  policy: PolicyView;
  resolver: AddressResolver;
  logger: Logger;
}

export interface ProxyAddresses {
  tls: { address: string; port: number };
  http: { address: string; port: number };
}


/**
 * The TLS (SNI) and HTTP (Host) proxy listeners, explicit mode. Each connection takes a slot
 * (global cap via maxConnections, per-client cap via ClientSlots); SIGTERM stops accepting,
 * lets open connections finish for a while, then closes them.
 */
export class ProxyServer {
  private readonly tls: Server;
  private readonly http: Server;
  private readonly open = new Set<Socket>();
  private readonly openBy = { tls: 0, http: 0 };
  private readonly deps: ProxyServerDeps;

  constructor(deps: ProxyServerDeps) {
    this.deps = deps;
    const { config, logger } = deps;
    const log = logger.child({ component: 'proxy' });
    const dial: DialDeps = {
      policy: deps.policy,
      resolver: deps.resolver,
      hosts: config.hosts,
      guard: new DialGuard(config.allowedUpstreamNetworks),
      connectTimeoutMs: config.connectTimeoutMs,
    };
    const slots = new ClientSlots(config.maxConnectionsPerClient);
    const report = (listener: 'tls' | 'http', result: ProxyResult, blockedBy: Parameters<NonNullable<ProxyEvents['onResult']>>[2]): void => {
      deps.onResult?.(listener, result, blockedBy);
    };
    const accept = (listener: 'tls' | 'http', handle: (socket: Socket, done: () => void) => Promise<void>) => (socket: Socket) => {
      const client = socket.remoteAddress ?? '';
      socket.on('error', (err) => {
        log.debug({ err: err.message, listener }, 'client socket error');
        socket.destroy();
      });
      if (!slots.take(client)) {
        report(listener, 'limited', null);
        socket.destroy();
        return;
      }
      // Tracked until the socket is closed, not until its handler is done: a refused HTTP client
      // may still be reading its 4xx page, and close() must end that connection too.
      this.open.add(socket);
      this.openBy[listener]++;
      let isDone = false;
      const done = (): void => {
        if (isDone) return;
        isDone = true;
        slots.release(client);
      };
      socket.once('close', () => {
        this.open.delete(socket);
        this.openBy[listener]--;
        deps.onClosed?.(listener, socket.bytesRead, socket.bytesWritten);
        done();
      });
      handle(socket, done).catch((e: unknown) => {
        log.error({ err: e instanceof Error ? e.message : String(e), listener }, 'proxy handler failed (a bug)');
        socket.destroy();
        done();
      });
    };
    this.tls = createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      accept('tls', (socket, done) =>
        handleTlsConnection(
          socket,
          {
            dial,
            upstreamPort: config.tls.upstreamPort,
            blockAction: config.blockAction,
            clientHelloTimeoutMs: config.clientHelloTimeoutMs,
            clientHelloMaxBytes: config.clientHelloMaxBytes,
            idleTimeoutMs: config.idleTimeoutMs,
            logger: log,
            onResult: deps.onResult,
            onBlocked: deps.onBlocked,
          },
          done,
        ),
      ),
    );
    this.http = createServer(
      { allowHalfOpen: true, pauseOnConnect: true },
      accept('http', (socket, done) =>
        handleHttpConnection(
          socket,
          {
            dial,
            upstreamPort: config.http.upstreamPort,
            blockAction: config.blockAction,
            headTimeoutMs: config.clientHelloTimeoutMs,
            maxHeadBytes: config.httpMaxHeadBytes,
            clientHelloMaxBytes: config.clientHelloMaxBytes,
            idleTimeoutMs: config.idleTimeoutMs,
            logger: log,
            onResult: deps.onResult,
            onBlocked: deps.onBlocked,
          },
          done,
        ),
      ),
    );
    this.tls.maxConnections = config.maxConnections;
    this.http.maxConnections = config.maxConnections;
  }

  /** Client connections open now, by listener. */
  get activeConnections(): { tls: number; http: number } {
    return { ...this.openBy };
  }

  async listen(): Promise<ProxyAddresses> {
    const bind = (server: Server, listen: string, field: string): Promise<{ address: string; port: number }> => {
      const at = parseListenAddress(listen, field);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(at.port, at.host, () => {
          server.off('error', reject);
          const address = server.address();
          resolve(typeof address === 'object' && address !== null ? { address: address.address, port: address.port } : { address: at.host, port: at.port });
        });
      });
    };
    const addresses = {
      tls: await bind(this.tls, this.deps.config.tls.listen, 'proxy.tls.listen'),
      http: await bind(this.http, this.deps.config.http.listen, 'proxy.http.listen'),
    };
    this.deps.logger.info({ component: 'proxy', ...addresses }, 'proxy listening');
    return addresses;
  }

  /** Stops accepting; open connections get `drainMs` to finish, then are closed. */
  async close(drainMs: number = DEFAULTS.proxyDrainTimeoutMs): Promise<void> {
    const closed = Promise.all([this.tls, this.http].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, drainMs).unref());
    await Promise.race([closed, deadline]);
    for (const socket of this.open) socket.destroy();
    await closed;
  }
}
