import { connect, type LookupFunction, type OnReadOpts, type Socket } from 'node:net';
import { PortcullisError, isPortcullisError } from '../../errors.js';
import { formatIp, parseIp, type ParsedIp } from '../../match/ip.js';
import { PrefixSet } from '../../match/prefix-set.js';

/**
 * SSRF guard for the proxy's upstream dials. The proxy connects wherever a client's SNI or Host
 * points, so without this a name that resolves to 127.0.0.1, 10.x or 169.254.169.254 would let
 * any client reach services behind the gateway (admin API, Redis, cloud metadata).
 *
 * The guard judges the exact address that is then dialled: the caller resolves the name, checks
 * the resulting IP, and hands that same IP to connectGuarded(), which checks it again and gives
 * net.connect() only an IP literal (never a name, and a lookup hook that refuses), so Node cannot
 * resolve a second time. A DNS-rebinding answer (public address at check time, private at
 * connect time) therefore has no second resolution to hide in.
 */

export interface ForbiddenNetwork {
  readonly cidr: string;
  readonly reason: string;
}

/**
 * Networks never dialled unless `proxy.allowedUpstreamNetworks` covers the address. On overlap
 * the longest prefix gives the reason. IPv4-mapped IPv6 (::ffff:0:0/96) is not listed: parseIp
 * folds it to IPv4, which is judged here. NAT64 and 6to4 are in EMBEDDED_IPV4_NETWORKS: the IPv4
 * address they carry is judged instead.
 */
export const FORBIDDEN_NETWORKS: readonly ForbiddenNetwork[] = Object.freeze(
  [
    { cidr: '0.0.0.0/8', reason: 'this network / unspecified (0.0.0.0 reaches the local host)' },
    { cidr: '10.0.0.0/8', reason: 'private network (RFC 1918)' },
    { cidr: '100.64.0.0/10', reason: 'carrier-grade NAT shared space (RFC 6598)' },
    { cidr: '127.0.0.0/8', reason: 'loopback' },
    { cidr: '169.254.0.0/16', reason: 'link-local, including cloud metadata 169.254.169.254' },
    { cidr: '172.16.0.0/12', reason: 'private network (RFC 1918)' },
    { cidr: '192.0.0.0/24', reason: 'IETF protocol assignments (RFC 6890)' },
    { cidr: '192.0.2.0/24', reason: 'documentation TEST-NET-1 (RFC 5737)' },
    { cidr: '192.168.0.0/16', reason: 'private network (RFC 1918)' },
    { cidr: '198.18.0.0/15', reason: 'benchmarking (RFC 2544)' },
    { cidr: '198.51.100.0/24', reason: 'documentation TEST-NET-2 (RFC 5737)' },
    { cidr: '203.0.113.0/24', reason: 'documentation TEST-NET-3 (RFC 5737)' },
    { cidr: '224.0.0.0/4', reason: 'multicast' },
    { cidr: '240.0.0.0/4', reason: 'reserved (class E)' },
    { cidr: '255.255.255.255/32', reason: 'limited broadcast' },
    { cidr: '::/128', reason: 'unspecified (:: reaches the local host)' },
    { cidr: '::1/128', reason: 'loopback' },
    { cidr: '::/96', reason: 'IPv4-compatible (deprecated, RFC 4291)' },
    { cidr: '64:ff9b:1::/48', reason: 'local-use NAT64 (RFC 8215)' },
    { cidr: '100::/64', reason: 'discard-only (RFC 6666)' },
    { cidr: '2001::/32', reason: 'Teredo tunnel (RFC 4380)' },
    { cidr: '2001:db8::/32', reason: 'documentation (RFC 3849)' },
    { cidr: '3fff::/20', reason: 'documentation (RFC 9637)' },
    { cidr: 'fc00::/7', reason: 'unique local (ULA, RFC 4193)' },
    { cidr: 'fe80::/10', reason: 'link-local' },
    { cidr: 'fec0::/10', reason: 'site-local (deprecated, RFC 3879)' },
    { cidr: 'ff00::/8', reason: 'multicast' },
  ].map((entry) => Object.freeze(entry)),
);

export interface EmbeddedIpv4Network {
  readonly cidr: string;
  readonly name: string;
}

/** IPv6 networks that carry an IPv4 address a translator or relay forwards to: that IPv4 is judged. */
export const EMBEDDED_IPV4_NETWORKS: readonly EmbeddedIpv4Network[] = Object.freeze([
  // RFC 6052 well-known prefix: the IPv4 address is the last 32 bits.
  Object.freeze({ cidr: '64:ff9b::/96', name: 'NAT64' }),
  // RFC 3056: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD in bits 16-47.
  Object.freeze({ cidr: '2002::/16', name: '6to4' }),
]);

const FORBIDDEN = PrefixSet.fromCidrs(FORBIDDEN_NETWORKS.map((n) => n.cidr));
const EMBEDDED = PrefixSet.fromCidrs(EMBEDDED_IPV4_NETWORKS.map((n) => n.cidr));
const NAT64_INDEX = 0;

/** The IPv4 address inside a NAT64 or 6to4 address. */
function embeddedIpv4(ip: ParsedIp, embeddedIndex: number): ParsedIp {
  const w = ip.words;
  const v4 = embeddedIndex === NAT64_INDEX ? w[3]! : ((w[0]! << 16) | (w[1]! >>> 16)) >>> 0;
  return { family: 4, words: Uint32Array.of(v4) };
}

/** Why an address (IPv4, or IPv6 outside the embedding networks) is forbidden, or null. */
function forbiddenReason(ip: ParsedIp): string | null {
  const index = FORBIDDEN.longestMatch(ip);
  if (index === -1) return null;
  const network = FORBIDDEN_NETWORKS[index]!;
  return `in ${network.cidr}: ${network.reason}`;
}

export type DialVerdict = { isAllowed: true } | { isAllowed: false; reason: string };

const ALLOWED: DialVerdict = Object.freeze({ isAllowed: true });

/**
 * Decides whether the proxy may dial an address. Built once from `proxy.allowedUpstreamNetworks`
 * (the config loader has already validated them; a bad CIDR throws PCL_ERR_INVALID_CIDR here).
 */
export class DialGuard {
  private readonly allowed: PrefixSet;

  constructor(allowedNetworks: readonly string[]) {
    this.allowed = PrefixSet.fromCidrs(allowedNetworks);
  }

  /**
   * Allowed when the address is inside an allow-listed network, or outside every forbidden one.
   * Not an IP address (a name, garbage): refused, because a name would be resolved again by
   * whoever connects. NAT64 and 6to4 addresses are judged by the IPv4 address they carry (an
   * allow-listed IPv4 network lets its embedded forms through too).
   */
  check(address: string): DialVerdict {
    const ip = parseIp(address);
    if (ip === null) return { isAllowed: false, reason: 'not an IP address' };
    if (this.allowed.has(ip)) return ALLOWED;
    if (ip.family === 6) {
      const embeddedIndex = EMBEDDED.longestMatch(ip);
      if (embeddedIndex !== -1) {
        const v4 = embeddedIpv4(ip, embeddedIndex);
        if (this.allowed.has(v4)) return ALLOWED;
        const reason = forbiddenReason(v4);
        if (reason === null) return ALLOWED;
        const network = EMBEDDED_IPV4_NETWORKS[embeddedIndex]!;
        return { isAllowed: false, reason: `${network.name} (${network.cidr}) form of ${formatIp(v4)}, ${reason}` };
      }
    }
    const reason = forbiddenReason(ip);
    return reason === null ? ALLOWED : { isAllowed: false, reason };
  }
}

export type DialFailureKind = 'timeout' | 'refused' | 'unreachable' | 'reset' | 'network' | 'invalid';

function dialForbidden(address: string, port: number, reason: string): PortcullisError {
  return new PortcullisError('PCL_ERR_DIAL_FORBIDDEN', `refusing to dial ${address} port ${port}: ${reason}`, {
    details: { address, port, reason },
  });
}

function dialFailed(address: string, port: number, kind: DialFailureKind, why: string, cause?: unknown): PortcullisError {
  const upstream = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  return new PortcullisError('PCL_ERR_DIAL_FAILED', `cannot connect to ${upstream}: ${why}`, {
    cause,
    details: { upstream, address, port, phase: 'connect', kind },
  });
}

function failureKind(e: unknown): DialFailureKind {
  const code = e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : '';
  switch (code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return 'unreachable';
    case 'ECONNRESET':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ERR_INVALID_IP_ADDRESS':
    case 'ERR_SOCKET_BAD_PORT':
      return 'invalid';
    default:
      return 'network';
  }
}

/** Never called for an IP literal; there only so that no name can reach Node's resolver. */
const refuseLookup: LookupFunction = (hostname, _options, callback) => {
  callback(dialForbidden(hostname, 0, 'not an IP address (no name resolution at dial time)'), '', 0);
};

export interface ConnectGuardedOptions {
  /** An IP address, already resolved by the caller and judged there; a name is refused. */
  host: string;
  port: number;
  guard: DialGuard;
  /** From SYN to established (`proxy.connectTimeout`, default DEFAULTS.dialConnectTimeoutMs). */
  timeoutMs: number;
  /** Source address to bind, an IP. */
  localAddress?: string;
  /** Read straight into a caller's buffer instead of emitting 'data' (see DownstreamForwarder). */
  onread?: OnReadOpts;
}

/**
 * Connects to an upstream after the dial guard allows its address.
 *
 * - A forbidden address, or anything that is not an IP address, rejects with
 *   PCL_ERR_DIAL_FORBIDDEN before a socket exists: no packet leaves.
 * - net.connect() receives the address as parsed and re-printed (brackets and zone ids dropped,
 *   IPv4-mapped IPv6 as IPv4), its family, and a lookup hook that refuses: it never resolves.
 * - Refused, unreachable, reset, or no answer within timeoutMs: PCL_ERR_DIAL_FAILED with
 *   `details.kind`; the socket is destroyed.
 *
 * The socket is half-open capable (allowHalfOpen): a server's FIN ends only its direction, and the
 * proxy decides when to end the other.
 *
 * Contract: the returned socket is connected and has no 'error' listener of ours left on it (nor
 * a timeout). The caller must attach its own 'error' listener in the continuation of this await,
 * before awaiting anything else; an error emitted on a socket without a listener would crash the
 * process. Promise continuations run before the next I/O callback, so no error can slip between.
 */
export async function connectGuarded(options: ConnectGuardedOptions): Promise<Socket> {
  const { host, port, guard, timeoutMs, localAddress, onread } = options;
  const ip = parseIp(host);
  const verdict = guard.check(host);
  if (ip === null || !verdict.isAllowed) throw dialForbidden(host, port, verdict.isAllowed ? 'not an IP address' : verdict.reason);
  const address = formatIp(ip);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw dialFailed(address, port, 'invalid', 'port must be 1-65535');
  return await new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    try {
      socket = connect({ host: address, port, family: ip.family, localAddress, lookup: refuseLookup, allowHalfOpen: true, ...(onread === undefined ? {} : { onread }) });
    } catch (e: unknown) {
      // net.connect throws synchronously on a malformed localAddress.
      reject(dialFailed(address, port, failureKind(e), e instanceof Error ? e.message : 'invalid options', e));
      return;
    }
    const onError = (e: Error): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.destroy();
      reject(isPortcullisError(e) ? e : dialFailed(address, port, failureKind(e), e.message, e));
    };
    const onConnect = (): void => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    };
    const timer = setTimeout(() => {
      socket.destroy(dialFailed(address, port, 'timeout', `no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}

