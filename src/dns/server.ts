import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { parseListenAddress } from '../config/address.js';
import { PortcullisError, errorMessage } from '../errors.js';
import type { DnsConfig } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import { AnswerCache, DEFAULT_CACHE_LIMITS } from './cache.js';
import { createDnsChain, type DnsChainOptions, type NameSet, type PolicyView } from './chain.js';
import { ClientAcl, DEFAULT_CLIENT_NETWORKS } from '../match/client-acl.js';
import { ClientRateLimiter } from './client-limits.js';
import { createDohListener } from './doh-listener.js';
import { DnsUdpListener, createDotListener, createTcpListener, type DnsHandler, type StreamLimits } from './listeners.js';
import { DnsUdpBatchListener } from './udp-batch-listener.js';
import { nativeBinding, nativeLoadError } from '../util/native-addon.js';
import { explainResolution, type ExplainDeps, type Resolution } from './explain.js';
import { UpstreamPool, type UpstreamPoolOptions } from './upstream.js';
import type { UpstreamResolver } from './upstream-types.js';

export interface DnsServerDeps {
  config: DnsConfig;
  policy: PolicyView;
  logger: Logger;
  /** For tests: an upstream resolver instead of a pool over config.upstreams. */
  upstream?: UpstreamResolver;
  onResult?: DnsChainOptions['onResult'];
  onBlocked?: DnsChainOptions['onBlocked'];
  onUpstreamResult?: UpstreamPoolOptions['onResult'];
  /**
   * dns.workers: share the UDP port with other threads' sockets (SO_REUSEPORT). A worker
   * thread serves UDP only (`udpOnly`); TCP, DoT and DoH stay with the main thread.
   */
  reusePort?: boolean;
  udpOnly?: boolean;
}

export interface DnsAddresses {
  udp: { address: string; port: number };
  tcp: { address: string; port: number };
  dot?: { address: string; port: number };
  doh?: { address: string; port: number };
}


/** Tries at finding one port free for both UDP and TCP when the listen port is 0. */
const ANY_PORT_ATTEMPTS = 8;

/** The UDP listener, whichever socket it runs on. */
interface UdpListener {
  /** Binds and starts serving; rejects with the socket error (code EADDRINUSE...). */
  listen(port: number, host: string): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

/** dns2's UDP server (Node's dgram): one datagram per call and per system call. */
function dgramUdpListener(type: 'udp4' | 'udp6', chain: DnsHandler, log: Logger): UdpListener {
  const server = new DnsUdpListener(type, chain, log);
  return {
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.bind(port, host, () => {
          server.off('error', reject);
          resolve(server.address());
        });
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The native batch socket (native/udp-batch.c). */
function batchUdpListener(binding: NonNullable<ReturnType<typeof nativeBinding>>, chain: DnsHandler, log: Logger, reusePort: boolean): UdpListener {
  const listener = new DnsUdpBatchListener(binding, chain, log);
  return {
    listen: (port, host) => Promise.resolve().then(() => listener.listen(port, host, reusePort)),
    close: () => {
      listener.close();
      return Promise.resolve();
    },
  };
}

/** The public DoH/DoT resolver names in force (dns.bypass.dohResolvers), or null when that category is off. */
export function dohResolverNames(isOn: boolean, policy: PolicyView): NameSet | null {
  return isOn ? { match: (name) => policy.dohResolvers.match(name) } : null;
}

/** A file named by the config, or PCL_ERR_CONFIG_INVALID naming the field. */
function readConfigFile(field: string, path: string): Promise<Buffer> {
  return readFile(path).catch((e: unknown) => {
    throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `${field}: cannot read ${path}: ${errorMessage(e)}`, { cause: e, details: { field } });
  });
}

/** One resolver: the handler chain, its cache and upstream pool, and every listener. */
export class DnsServer {
  readonly cache: AnswerCache;
  readonly upstream: UpstreamResolver;
  /** Which socket serves UDP: the native batch socket, or dns2's dgram server. */
  readonly udpIo: 'batch' | 'dgram';
  private udp: UdpListener;
  private readonly newUdp: () => UdpListener;
  private readonly streams: NetServer[] = [];
  private readonly named = new Map<'tcp' | 'dot' | 'doh', NetServer>();
  private readonly deps: DnsServerDeps;
  /** Open TCP/DoT/DoH connections, closed on shutdown instead of waiting for their idle timeout. */
  private readonly connections = new Set<Socket>();
  private readonly explainDeps: ExplainDeps;

  private constructor(deps: DnsServerDeps, chain: ReturnType<typeof createDnsChain>, cache: AnswerCache, upstream: UpstreamResolver, tls: { cert: Buffer; key: Buffer } | null, explainDeps: ExplainDeps) {
    this.deps = deps;
    this.explainDeps = explainDeps;
    this.cache = cache;
    this.upstream = upstream;
    const { config, logger } = deps;
    const log = logger.child({ component: 'dns' });
    const listen = parseListenAddress(config.listen, 'dns.listen');
    const limits: StreamLimits = { idleTimeoutMs: config.tcp.idleTimeoutMs, maxConnections: config.tcp.maxConnections, maxPipelined: config.tcp.maxPipelined };
    const binding = config.udpBatching ? nativeBinding() : null;
    if (config.udpBatching && binding === null) log.info({ reason: nativeLoadError() }, 'dns.udpBatching: native addon not available, UDP served through dgram');
    this.udpIo = binding === null ? 'dgram' : 'batch';
    this.newUdp = () => (binding === null ? dgramUdpListener(isIP(listen.host) === 6 ? 'udp6' : 'udp4', chain, log) : batchUdpListener(binding, chain, log, deps.reusePort === true));
    this.udp = this.newUdp();
    if (deps.udpOnly === true) return;
    this.named.set('tcp', createTcpListener(chain, limits, log));
    if (config.dot !== null && tls !== null) this.named.set('dot', createDotListener(chain, limits, tls, log));
    if (config.doh !== null && tls !== null) this.named.set('doh', createDohListener(chain, { path: config.doh.path, cert: tls.cert, key: tls.key, limits }, log));
    this.streams.push(...this.named.values());
    for (const server of this.streams) {
      server.on('connection', (socket: Socket) => {
        this.connections.add(socket);
        socket.once('close', () => this.connections.delete(socket));
      });
    }
  }

  static async create(deps: DnsServerDeps): Promise<DnsServer> {
    const { config, logger } = deps;
    const cache = new AnswerCache({ ...DEFAULT_CACHE_LIMITS, maxEntries: config.cache.maxEntries, maxBytes: config.cache.maxBytes, staleMaxSec: config.cache.serveStale ? DEFAULT_CACHE_LIMITS.staleMaxSec : 0 });
    const upstreamCa = config.upstreamCa === null ? null : await readConfigFile('dns.upstreamCa', config.upstreamCa);
    const upstream = deps.upstream ?? new UpstreamPool(config.upstreams, { logger, onResult: deps.onUpstreamResult, ca: upstreamCa?.toString('utf8') ?? null });
    const dohResolvers = dohResolverNames(config.bypass.dohResolvers, deps.policy);
    const chain = createDnsChain({
      policy: deps.policy,
      upstream,
      cache,
      acl: new ClientAcl(config.allowClients ?? DEFAULT_CLIENT_NETWORKS),
      rateLimiter: new ClientRateLimiter({ perSecond: config.rateLimit.perSecond, burst: config.rateLimit.burst, maxClients: config.rateLimit.maxClients }),
      rateLimitAction: config.rateLimit.action,
      block: { mode: config.blockMode, negativeTtlSec: config.negativeTtlSec },
      firefoxCanary: config.bypass.firefoxCanary,
      stripEch: config.bypass.stripEch,
      dohResolvers,
      logger,
      onResult: deps.onResult,
      onBlocked: deps.onBlocked,
    });
    const tlsFiles = config.tls;
    const tls = tlsFiles === null ? null : { cert: await readConfigFile('dns.tls.cert', tlsFiles.cert), key: await readConfigFile('dns.tls.key', tlsFiles.key) };
    return new DnsServer(deps, chain, cache, upstream, tls, { policy: deps.policy, upstream, firefoxCanary: config.bypass.firefoxCanary, dohResolvers });
  }

  /** How the DNS path judges `name` through its live resolution (check --resolve, /v1/check?resolve=1). */
  explain(name: string): Promise<Resolution> {
    return explainResolution(name, this.explainDeps);
  }

  async listen(): Promise<DnsAddresses> {
    const { config } = this.deps;
    const main = parseListenAddress(config.listen, 'dns.listen');
    const bind = (server: NetServer, host: string, p: number): Promise<{ address: string; port: number }> =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, host, () => {
          server.off('error', reject);
          const address = server.address();
          resolve(typeof address === 'object' && address !== null ? { address: address.address, port: address.port } : { address: host, port: p });
        });
      });
    // Port 0 means "any": TCP takes the port UDP got, as clients expect both on one port. That
    // number may already be taken for TCP; then UDP tries another (a few times).
    if (this.deps.udpOnly === true) {
      const udp = await this.udp.listen(main.port, main.host);
      return { udp, tcp: udp };
    }
    let udpAddress: { address: string; port: number } | null = null;
    let tcpAddress: { address: string; port: number } | null = null;
    for (let attempt = 0; tcpAddress === null; attempt++) {
      udpAddress = await this.udp.listen(main.port, main.host);
      try {
        tcpAddress = await bind(this.named.get('tcp')!, main.host, main.port === 0 ? udpAddress.port : main.port);
      } catch (e: unknown) {
        const isTaken = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (main.port !== 0 || !isTaken || attempt >= ANY_PORT_ATTEMPTS) throw e;
        await this.udp.close();
        this.udp = this.newUdp();
      }
    }
    const addresses: DnsAddresses = { udp: { address: udpAddress!.address, port: udpAddress!.port }, tcp: tcpAddress };
    const dot = this.named.get('dot');
    if (dot !== undefined && config.dot !== null) {
      const at = parseListenAddress(config.dot.listen, 'dns.dot.listen');
      addresses.dot = await bind(dot, at.host, at.port);
    }
    const doh = this.named.get('doh');
    if (doh !== undefined && config.doh !== null) {
      const at = parseListenAddress(config.doh.listen, 'dns.doh.listen');
      addresses.doh = await bind(doh, at.host, at.port);
    }
    this.deps.logger.info({ component: 'dns', ...addresses, udpIo: this.udpIo }, 'dns listening');
    return addresses;
  }

  async close(): Promise<void> {
    await this.udp.close();
    const closing = Promise.all(
      this.streams.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => {
              resolve();
            });
          }),
      ),
    );
    for (const socket of this.connections) socket.destroy();
    await closing;
    await this.upstream.close();
  }
}
