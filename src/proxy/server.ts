import { createServer, isIPv4, type Server, type Socket } from 'node:net';
import type { AppId } from '../catalog/index.js';
import type { ProxyConfig } from '../config/index.js';
import { parseListenAddress } from '../config/address.js';
import { DEFAULTS } from '../config/defaults.js';
import type { AddressResolver, PolicyView } from '../dns/index.js';
import { PortcullisError } from '../errors.js';
import { ClientAcl, DEFAULT_CLIENT_NETWORKS } from '../match/client-acl.js';
import { unmapIpv4 } from '../match/ip.js';
import type { Logger } from '../observability/logger.js';
import { nativeBinding, nativeLoadError, socketFd, type Endpoint } from '../util/native-addon.js';
import { Connection, type Handler } from './connection.js';
import { ConnectionTable } from './connection-table.js';
import { createProxyContext, type ProxyContext } from './context.js';
import { inspectTls } from './decide/tls.js';
import { HttpStream } from './decide/http.js';
import { inspectTransparent } from './decide/transparent.js';
import { ProxyReporter, type ProxyEvents, type ProxyListener } from './events.js';
import { OwnAddresses } from './own-address.js';
import { QuicRelay } from './quic-relay.js';

export interface ProxyServerDeps extends ProxyEvents {
  config: ProxyConfig;
  policy: PolicyView;
  resolver: AddressResolver;
  logger: Logger;
  /** Display names of the catalog's apps, for 451 pages. */
  appNames?: ReadonlyMap<AppId, string>;
}

export interface ProxyAddresses {
  tls: Endpoint;
  http: Endpoint;
  /** The intercepting listeners, when configured. */
  transparent?: Endpoint;
  quic?: Endpoint;
}

type TcpListener = Exclude<ProxyListener, 'quic'>;

/**
 * The proxy's listeners: TLS (SNI) and HTTP (Host) in explicit mode, and the intercepting TCP
 * and QUIC listeners of transparent mode. This is where a connection is admitted or not:
 *   1. proxy.allowClients: a client outside it is closed at accept, before a byte is read;
 *   2. the ConnectionTable: one slot per connection, at most maxConnectionsPerClient per client
 *      (the listener's maxConnections caps them all);
 *   3. a Connection owns it from there to its last socket's close, running the listener's
 *      handler: inspect, decide, hand back an outcome the Connection acts on.
 * On a policy change, every open connection is decided again (recheck). SIGTERM stops
 * accepting, lets open connections finish for a while, then closes them.
 */
export class ProxyServer {
  private readonly tls: Server;
  private readonly http: Server;
  private readonly transparent: Server | null = null;
  private readonly quic: QuicRelay | null = null;
  private readonly ctx: ProxyContext;
  private readonly table: ConnectionTable;
  private readonly acl: ClientAcl;
  private readonly binding = nativeBinding();

  constructor(private readonly deps: ProxyServerDeps) {
    const { config } = deps;
    const report = new ProxyReporter(deps, deps.logger.child({ component: 'proxy' }));
    this.ctx = createProxyContext(config, deps.policy, deps.resolver, report, deps.appNames);
    this.table = new ConnectionTable(config.maxConnectionsPerClient, report);
    this.acl = new ClientAcl(config.allowClients ?? DEFAULT_CLIENT_NETWORKS);
    this.tls = this.listener('tls', (connection) => inspectTls(connection, this.ctx, config.tls.upstreamPort));
    this.http = this.listener('http', (connection) =>
      Promise.resolve({ kind: 'stream', stream: new HttpStream(connection, this.ctx, { upstreamPort: config.http.upstreamPort, fixed: null }) }),
    );

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
      const server: Server = this.listener('transparent', (connection) =>
        inspectTransparent(connection, this.ctx, {
          originalDestination,
          isOwnAddress: (destination) => {
            const listening = server.address();
            return listening !== null && typeof listening !== 'string' && ownAddresses.isListener(destination, listening);
          },
          firstDataTimeoutMs: transparent.firstDataTimeoutMs,
        }),
      );
      this.transparent = server;
    }
    if (transparent.quic !== null) {
      const at = parseListenAddress(transparent.quic, 'proxy.transparent.quic');
      this.quic = new QuicRelay(this.ctx, this.table, {
        binding,
        listen: { address: at.host, port: at.port },
        idleTimeoutMs: transparent.quicIdleTimeoutMs,
        maxFlows: transparent.quicMaxFlows,
        pendingDatagrams: DEFAULTS.quicPendingDatagrams,
        pendingBytes: DEFAULTS.quicPendingBytes,
        acl: this.acl,
      });
    }
  }

  /** Client connections (QUIC: flows) open now, by listener. */
  get activeConnections(): Record<ProxyListener, number> {
    return this.table.active;
  }

  /**
   * The policy changed: every open connection and flow is decided again on what it was allowed
   * on, and those now blocked are cut. Returns how many were cut.
   */
  recheck(): number {
    return this.table.recheck(this.deps.policy);
  }

  async listen(): Promise<ProxyAddresses> {
    const bind = (server: Server, listen: string, field: string): Promise<Endpoint> => {
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
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, drainMs);
    });
    await Promise.race([closed, deadline]);
    clearTimeout(timer);
    for (const entry of this.table.all()) entry.close('destroy');
    await closed;
  }

  /** A TCP listener: admission, then a Connection running `handler`. */
  private listener(listener: TcpListener, handler: Handler): Server {
    const { report } = this.ctx;
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      const clientAddress = unmapIpv4(socket.remoteAddress ?? '');
      if (!this.acl.allows(clientAddress)) {
        socket.on('error', () => undefined);
        socket.destroy();
        report.result(listener, 'client-refused');
        return;
      }
      const connection = new Connection(listener, socket, clientAddress, this.ctx, this.table);
      if (!this.table.open(connection)) {
        report.result(listener, 'limited');
        connection.close('destroy');
        return;
      }
      void connection.run(handler);
    });
    server.maxConnections = this.deps.config.maxConnections;
    return server;
  }
}
