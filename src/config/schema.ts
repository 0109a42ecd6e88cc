import { Type, type Static } from '@sinclair/typebox';
import { APP_IDS } from '../catalog/apps.js';
import { DEFAULTS } from './defaults.js';

/**
 * The configuration file (YAML). Every key is optional; unknown keys are errors. Semantic
 * checks the schema cannot say (addresses parse, files exist) live in load.ts.
 */
const HostPort = Type.String({ minLength: 3, description: 'host:port, [v6]:port' });
const AppIdSchema = Type.Union(APP_IDS.map((id) => Type.Literal(id)));
const Duration = Type.Union([Type.String({ pattern: '^[0-9]+(ms|s|m|h|d)$' }), Type.Integer({ minimum: 1, description: 'seconds' })]);

const ListObject = Type.Object(
  {
    source: Type.String({ minLength: 1, description: 'local path or http(s) URL' }),
    name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' })),
    format: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('hosts'), Type.Literal('domains'), Type.Literal('adblock'), Type.Literal('cidr')])),
    action: Type.Optional(Type.Union([Type.Literal('block'), Type.Literal('allow')])),
    app: Type.Optional(AppIdSchema),
    refresh: Type.Optional(Duration),
  },
  { additionalProperties: false },
);

const Token = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    token: Type.Optional(Type.String({ minLength: 16 })),
    tokenFile: Type.Optional(Type.String({ minLength: 1 })),
    scopes: Type.Array(Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('admin')]), { minItems: 1 }),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    dns: Type.Optional(
      Type.Object(
        {
          listen: Type.Optional(HostPort),
          upstreams: Type.Optional(Type.Array(Type.String({ minLength: 3, description: 'IP[:port] (plain), tls://IP[:port][#name] (DoT), https://IP[:port][/path][#name] (DoH)' }), { minItems: 1 })),
          upstreamCa: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of CA certificates trusted for tls:// and https:// upstreams, beside the built-in roots' })),
          // nullip: A 0.0.0.0, AAAA ::. "null" (quoted: unquoted null is YAML's null) is an alias.
          blockMode: Type.Optional(Type.Union([Type.Literal('nxdomain'), Type.Literal('nullip'), Type.Literal('null'), Type.Literal('refused')])),
          negativeTtl: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400, description: 'seconds' })),
          allowClients: Type.Optional(Type.Array(Type.String(), { description: 'CIDRs allowed to query; default loopback, RFC 1918, ULA' })),
          rateLimit: Type.Optional(
            Type.Object(
              {
                perSecond: Type.Optional(Type.Integer({ minimum: 0, description: '0 turns the limit off' })),
                burst: Type.Optional(Type.Integer({ minimum: 1 })),
                action: Type.Optional(Type.Union([Type.Literal('refused'), Type.Literal('drop')])),
              },
              { additionalProperties: false },
            ),
          ),
          tcp: Type.Optional(
            Type.Object(
              {
                idleTimeout: Type.Optional(Duration),
                maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
                maxPipelined: Type.Optional(Type.Integer({ minimum: 1 })),
              },
              { additionalProperties: false },
            ),
          ),
          cache: Type.Optional(
            Type.Object(
              {
                maxEntries: Type.Optional(Type.Integer({ minimum: 1 })),
                maxBytes: Type.Optional(Type.Integer({ minimum: 65_536 })),
                serveStale: Type.Optional(Type.Boolean()),
              },
              { additionalProperties: false },
            ),
          ),
          bypass: Type.Optional(
            Type.Object(
              {
                firefoxCanary: Type.Optional(Type.Boolean()),
                dohResolvers: Type.Optional(Type.Boolean()),
                stripEch: Type.Optional(Type.Boolean()),
              },
              { additionalProperties: false },
            ),
          ),
          tls: Type.Optional(Type.Object({ cert: Type.String({ minLength: 1 }), key: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
          dot: Type.Optional(Type.Object({ listen: HostPort }, { additionalProperties: false })),
          doh: Type.Optional(Type.Object({ listen: HostPort, path: Type.Optional(Type.String({ pattern: '^/' })) }, { additionalProperties: false })),
          workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
          udpBatching: Type.Optional(Type.Boolean({ description: 'serve UDP through the native batch socket (recvmmsg/sendmmsg) when the addon is built' })),
        },
        { additionalProperties: false },
      ),
    ),
    proxy: Type.Optional(
      Type.Object(
        {
          tls: Type.Optional(Type.Object({ listen: Type.Optional(HostPort), upstreamPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })) }, { additionalProperties: false })),
          http: Type.Optional(Type.Object({ listen: Type.Optional(HostPort), upstreamPort: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })) }, { additionalProperties: false })),
          hosts: Type.Optional(Type.Record(Type.String(), Type.String())),
          allowedUpstreamNetworks: Type.Optional(Type.Array(Type.String())),
          blockAction: Type.Optional(Type.Union([Type.Literal('alert'), Type.Literal('rst')], { description: 'TLS: handshake_failure alert or TCP reset' })),
          maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
          maxConnectionsPerClient: Type.Optional(Type.Integer({ minimum: 1 })),
          clientHelloTimeout: Type.Optional(Duration),
          clientHelloMaxBytes: Type.Optional(Type.Integer({ minimum: 16_384, maximum: 1_048_576 })),
          httpMaxHeadBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1_048_576 })),
          connectTimeout: Type.Optional(Duration),
          idleTimeout: Type.Optional(Duration),
          halfClosedTimeout: Type.Optional(Duration),
          allowClients: Type.Optional(Type.Array(Type.String(), { description: 'CIDRs that may use the proxy listeners; default loopback, RFC 1918, ULA' })),
          transparent: Type.Optional(
            Type.Object(
              {
                mode: Type.Optional(Type.Union([Type.Literal('redirect'), Type.Literal('tproxy')], { description: 'how nftables hands TCP over: REDIRECT/DNAT or TPROXY' })),
                tcp: Type.Optional(HostPort),
                quic: Type.Optional(HostPort),
                firstDataTimeout: Type.Optional(Duration),
                quicIdleTimeout: Type.Optional(Duration),
                quicMaxFlows: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    admin: Type.Optional(
      Type.Object(
        {
          listen: Type.Optional(HostPort),
          tokens: Type.Optional(Type.Array(Token)),
          decisions: Type.Optional(
            Type.Object(
              {
                kept: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
                clientAddresses: Type.Optional(Type.Boolean({ description: 'show client addresses in GET /v1/decisions' })),
                names: Type.Optional(Type.Boolean({ description: 'show the blocked names in GET /v1/decisions' })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    store: Type.Optional(
      Type.Object({ path: Type.Optional(Type.String({ minLength: 1 })), redis: Type.Optional(Type.String({ pattern: '^rediss?://' })) }, { additionalProperties: false }),
    ),
    policy: Type.Optional(
      Type.Object(
        {
          apps: Type.Optional(Type.Array(AppIdSchema, { uniqueItems: true })),
          extended: Type.Optional(Type.Array(AppIdSchema, { uniqueItems: true, description: 'apps whose extended tier is blocked too' })),
          lists: Type.Optional(Type.Array(Type.Union([Type.String({ minLength: 1 }), ListObject]))),
          catalog: Type.Optional(
            Type.Object(
              {
                url: Type.String({ pattern: '^https://', description: 'where the signed catalog bundle is fetched (HTTPS only)' }),
                publicKey: Type.String({ minLength: 1, description: 'Ed25519 public key bundles must be signed with: a PEM file, or the PEM text' }),
                refresh: Type.Optional(Duration),
                ca: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of CA certificates trusted for url, beside the built-in roots' })),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    nftables: Type.Optional(
      Type.Object(
        {
          file: Type.String({ minLength: 1, description: 'where the IP-layer ruleset is written, and rewritten on every policy change' }),
          apply: Type.Optional(Type.Boolean({ description: 'load it with `nft -f` after writing (needs CAP_NET_ADMIN)' })),
          table: Type.Optional(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,31}$' })),
        },
        { additionalProperties: false },
      ),
    ),
    log: Type.Optional(
      Type.Object(
        { level: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)))) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ConfigFile = Static<typeof ConfigSchema>;

export interface ListConfig {
  source: string;
  name: string;
  format: 'auto' | 'hosts' | 'domains' | 'adblock' | 'cidr';
  action: 'block' | 'allow';
  app: (typeof APP_IDS)[number] | null;
  refreshMs: number;
  isRemote: boolean;
}

export interface CatalogUpdateConfig {
  url: string;
  /** The PEM text itself, or the absolute path of a PEM file. */
  publicKey: string;
  refreshMs: number;
  /** Absolute path of a PEM file of extra trusted CAs, or null. */
  ca: string | null;
}

export interface TokenConfig {
  name: string;
  token: string | null;
  tokenFile: string | null;
  scopes: ('read' | 'write' | 'admin')[];
}

export interface ProxyConfig {
  tls: { listen: string; upstreamPort: number };
  http: { listen: string; upstreamPort: number };
  hosts: Record<string, string>;
  allowedUpstreamNetworks: string[];
  blockAction: 'alert' | 'rst';
  maxConnections: number;
  maxConnectionsPerClient: number;
  clientHelloTimeoutMs: number;
  clientHelloMaxBytes: number;
  httpMaxHeadBytes: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  halfClosedTimeoutMs: number;
  /** Who may use the proxy listeners; null: the default networks (loopback, RFC 1918, ULA). */
  allowClients: string[] | null;
  /** Transparent (intercepting) listeners; null when not configured. */
  transparent: TransparentConfig | null;
}

export interface TransparentConfig {
  mode: 'redirect' | 'tproxy';
  /** TCP listener nftables sends intercepted connections to; null: none. */
  tcp: string | null;
  /** UDP listener for TPROXY'd QUIC (UDP 443); null: none. */
  quic: string | null;
  /** How long to wait for a client's first bytes before deciding on address and port alone. */
  firstDataTimeoutMs: number;
  quicIdleTimeoutMs: number;
  quicMaxFlows: number;
}

export interface DnsConfig {
  listen: string;
  upstreams: string[];
  /** PEM file trusted for encrypted upstreams beside the built-in roots; null: the built-in roots only. */
  upstreamCa: string | null;
  blockMode: 'nxdomain' | 'nullip' | 'refused';
  negativeTtlSec: number;
  /** null: the default networks (loopback, RFC 1918, ULA). */
  allowClients: string[] | null;
  rateLimit: { perSecond: number; burst: number; action: 'refused' | 'drop'; maxClients: number };
  tcp: { idleTimeoutMs: number; maxConnections: number; maxPipelined: number };
  cache: { maxEntries: number; maxBytes: number; serveStale: boolean };
  bypass: { firefoxCanary: boolean; dohResolvers: boolean; stripEch: boolean };
  tls: { cert: string; key: string } | null;
  dot: { listen: string } | null;
  doh: { listen: string; path: string } | null;
  workers: number;
  /** UDP through the native batch socket when the addon is there; dns2's dgram server otherwise. */
  udpBatching: boolean;
}

/** The configuration with every default filled in and every value checked. */
export interface Config {
  /** Where the configuration came from (file path, or "defaults"). */
  source: string;
  dns: DnsConfig;
  proxy: ProxyConfig;
  admin: { listen: string; tokens: TokenConfig[]; decisions: { kept: number; clientAddresses: boolean; names: boolean } };
  store: { path: string; redis: string | null };
  policy: { apps: (typeof APP_IDS)[number][]; extended: (typeof APP_IDS)[number][]; lists: ListConfig[]; catalog: CatalogUpdateConfig | null };
  /** The IP layer exported as an nftables ruleset; null when not configured. */
  nftables: { file: string; apply: boolean; table: string } | null;
  log: { level: string };
}

/** A config file merged over the defaults: every section present but the optional ones. */
export type MergedConfigFile = Required<Omit<ConfigFile, 'nftables'>> & Pick<ConfigFile, 'nftables'>;

export const DEFAULT_FILE: MergedConfigFile = {
  dns: { listen: DEFAULTS.dnsListen, upstreams: [...DEFAULTS.dnsUpstreams] },
  proxy: {
    tls: { listen: DEFAULTS.proxyTlsListen, upstreamPort: DEFAULTS.proxyTlsUpstreamPort },
    http: { listen: DEFAULTS.proxyHttpListen, upstreamPort: DEFAULTS.proxyHttpUpstreamPort },
    hosts: {},
    allowedUpstreamNetworks: [],
  },
  admin: { listen: DEFAULTS.adminListen, tokens: [] },
  store: { path: DEFAULTS.storePath },
  policy: { apps: [...DEFAULTS.policyApps], extended: [], lists: [] },
  log: { level: 'info' },
};
