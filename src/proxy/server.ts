import { createServer, isIPv4, type Server, type Socket } from 'node:net';
import type { ProxyConfig } from '../config/index.js';
import { parseListenAddress } from '../config/address.js';
import { unmapIpv4 } from '../match/ip.js';
import { DEFAULTS } from '../config/defaults.js';
import { PortcullisError } from '../errors.js';
import type { AddressResolver, PolicyView } from '../dns/index.js';
import type { Logger } from '../observability/logger.js';
import { ClientSlots } from './client-slots.js';
import type { DialDeps } from './dial.js';
import { DialGuard } from './dial-guard.js';
import { handleHttpConnection } from './http-proxy.js';
import { handleTlsConnection, type ProxyEvents, type ProxyListener } from './tls-proxy.js';
import { nativeLoadError, socketFd, nativeBinding, type Endpoint } from '../util/native-addon.js';
import { OwnAddresses } from './transparent/own-address.js';
import { QuicRelay } from './transparent/quic-relay.js';
import { handleTransparentConnection } from './transparent/tcp.js';

export interface ProxyServerDeps extends ProxyEvents {
  config: ProxyConfig;
  policy: PolicyView;
  resolver: AddressResolver;
  logger: Logger;
}

export interface ProxyAddresses {
  tls: Endpoint;
  http: Endpoint;
  /** The intercepting listeners, when configured. */
  transparent?: Endpoint;
  quic?: Endpoint;
}


/**
 * The TLS (SNI) and HTTP (Host) proxy listeners, explicit mode. Each connection takes a slot
 * (global cap via maxConnections, per-client cap via ClientSlots); SIGTERM stops accepting,
 * lets open connections finish for a while, then closes them.
 */
export class ProxyServer {
  private readonly tls: Server;
  private readonly http: Server;
  private readonly transparent: Server | null = null;
  private readonly quic: QuicRelay | null = null;
  private readonly open = new Set<Socket>();
  private readonly openBy = { tls: 0, http: 0, transparent: 0 };
  private readonly deps: ProxyServerDeps;
  private readonly binding = nativeBinding();

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
    const accept = (listener: Exclude<ProxyListener, 'quic'>, handle: (socket: Socket, done: () => void) => Promise<void>) => (socket: Socket) => {
      const client = socket.remoteAddress ?? '';
      socket.on('error', (err) => {
        log.debug({ err: err.message, listener }, 'client socket error');
        socket.destroy();
      });
      if (!slots.take(client)) {
        deps.onResult?.(listener, 'limited', null);
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

    const transparent = config.transparent;
    if (transparent === null) return;
    const binding = this.binding;
    if (binding === null) throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `proxy.transparent needs the native addon built at install (Linux only): ${nativeLoadError()}`);
    if (transparent.tcp !== null) {
      const originalDestination =
        transparent.mode === 'tproxy'
          ? (socket: Socket): Endpoint | null => (socket.localAddress === undefined || socket.localPort === undefined ? null : { address: socket.localAddress, port: socket.localPort })
          : (socket: Socket): Endpoint | null => binding.originalDestination(socketFd(socket), isIPv4(unmapIpv4(socket.remoteAddress ?? '')) ? 4 : 6);
      const ownAddresses = new OwnAddresses();
      const server: Server = createServer(
        { allowHalfOpen: true, pauseOnConnect: true },
        accept('transparent', (socket, done) =>
          handleTransparentConnection(
            socket,
            {
              dial,
              originalDestination,
              isOwnAddress: (destination: Endpoint): boolean => {
                const listening = server.address();
                return listening !== null && typeof listening !== 'string' && ownAddresses.isListener(destination, listening);
              },
              blockAction: config.blockAction,
              firstDataTimeoutMs: transparent.firstDataTimeoutMs,
              clientHelloTimeoutMs: config.clientHelloTimeoutMs,
              clientHelloMaxBytes: config.clientHelloMaxBytes,
              maxHeadBytes: config.httpMaxHeadBytes,
              idleTimeoutMs: config.idleTimeoutMs,
              logger: log,
              onResult: deps.onResult,
              onBlocked: deps.onBlocked,
            },
            done,
          ),
        ),
      );
      server.maxConnections = config.maxConnections;
      this.transparent = server;
    }
    if (transparent.quic !== null) {
      const at = parseListenAddress(transparent.quic, 'proxy.transparent.quic');
      this.quic = new QuicRelay({
        binding,
        listen: { address: at.host, port: at.port },
        policy: deps.policy,
        guard: dial.guard,
        idleTimeoutMs: transparent.quicIdleTimeoutMs,
        helloTimeoutMs: config.clientHelloTimeoutMs,
        clientHelloMaxBytes: config.clientHelloMaxBytes,
        maxFlows: transparent.quicMaxFlows,
        maxFlowsPerClient: config.maxConnectionsPerClient,
        pendingDatagrams: DEFAULTS.quicPendingDatagrams,
        pendingBytes: DEFAULTS.quicPendingBytes,
        logger: log,
        onResult: deps.onResult,
        onBlocked: deps.onBlocked,
        onClosed: deps.onClosed,
      });
    }
  }

  /** Client connections open now, by listener. */
  get activeConnections(): Record<ProxyListener, number> {
    return { ...this.openBy, quic: this.quic?.activeFlows ?? 0 };
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
    const addresses: ProxyAddresses = {
      tls: await bind(this.tls, this.deps.config.tls.listen, 'proxy.tls.listen'),
      http: await bind(this.http, this.deps.config.http.listen, 'proxy.http.listen'),
    };
    const transparent = this.deps.config.transparent;
    if (this.transparent !== null && transparent?.tcp != null) {
      addresses.transparent = await bind(this.transparent, transparent.tcp, 'proxy.transparent.tcp');
      if (transparent.mode === 'tproxy') {
        this.binding?.setTransparent(socketFd(this.transparent), isIPv4(addresses.transparent.address) ? 4 : 6);
      }
    }
    if (this.quic !== null) addresses.quic = this.quic.listen();
    this.deps.logger.info({ component: 'proxy', ...addresses }, 'proxy listening');
    return addresses;
  }

  /** Stops accepting; open connections get `drainMs` to finish, then are closed. */
  async close(drainMs: number = DEFAULTS.proxyDrainTimeoutMs): Promise<void> {
    this.quic?.close();
    const servers = this.transparent === null ? [this.tls, this.http] : [this.tls, this.http, this.transparent];
    const closed = Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, drainMs).unref());
    await Promise.race([closed, deadline]);
    for (const socket of this.open) socket.destroy();
    await closed;
  }
}
