import { isIP } from 'node:net';
import { parseHostPort } from './address.js';

/** One entry of dns.upstreams, parsed. `label` is the entry as written: the metric and log label. */
export type UpstreamAddress =
  | { protocol: 'udp'; label: string; host: string; port: number }
  /** DNS over TLS (RFC 7858); the certificate is checked against `name`. */
  | { protocol: 'tls'; label: string; host: string; port: number; name: string }
  /** DNS over HTTPS (RFC 8484), POST over HTTP/2; the certificate is checked against `name`. */
  | { protocol: 'https'; label: string; host: string; port: number; path: string; name: string };

const DOT_PORT = 853;
const HTTPS_PORT = 443;
const DEFAULT_DOH_PATH = '/dns-query';
const HOST_NAME = /^(?=.{1,253}\.?$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?$/i;

/**
 * `IP[:port]` (plain DNS, port 53), `tls://IP[:port][#name]` (DoT, port 853) or
 * `https://IP[:port][/path][#name]` (DoH, port 443, path /dns-query). The address must be an
 * IP: a resolver cannot depend on DNS to find its upstream. Without `#name` the certificate
 * must name the IP itself. Returns a problem text instead of throwing.
 */
export function parseUpstreamAddress(text: string): UpstreamAddress | string {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme === null) {
    const hp = parseHostPort(text, { defaultPort: 53 });
    if (typeof hp === 'string') return hp;
    return isIP(hp.host) === 0 ? notAnAddress(hp.host) : { protocol: 'udp', label: text, host: hp.host, port: hp.port };
  }
  const protocol = scheme[1]!.toLowerCase();
  if (protocol !== 'tls' && protocol !== 'https') return `"${text}": unknown scheme "${scheme[1]}://" (plain IP:port, tls:// or https://)`;
  const rest = text.slice(scheme[0].length);
  const hash = rest.indexOf('#');
  const beforeName = hash === -1 ? rest : rest.slice(0, hash);
  const nameText = hash === -1 ? null : rest.slice(hash + 1);
  if (nameText !== null && !(HOST_NAME.test(nameText) || isIP(nameText) !== 0)) return `"${text}": "#${nameText}" is not a host name to check the certificate against`;
  // The path starts at the first "/" after the host (an IPv6 host is bracketed, with no "/").
  const slash = beforeName.indexOf('/');
  const authority = slash === -1 ? beforeName : beforeName.slice(0, slash);
  const path = slash === -1 ? '' : beforeName.slice(slash);
  const hp = parseHostPort(authority, { defaultPort: protocol === 'tls' ? DOT_PORT : HTTPS_PORT });
  if (typeof hp === 'string') return hp;
  if (isIP(hp.host) === 0) return notAnAddress(hp.host);
  const name = nameText ?? hp.host;
  if (protocol === 'tls') {
    if (path !== '' && path !== '/') return `"${text}": a DoT upstream has no path`;
    return { protocol: 'tls', label: text, host: hp.host, port: hp.port, name };
  }
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(path === '' ? '/' : path)) return `"${text}": the path "${path}" is not a plain URL path (no query string)`;
  return { protocol: 'https', label: text, host: hp.host, port: hp.port, path: path === '' || path === '/' ? DEFAULT_DOH_PATH : path, name };
}

function notAnAddress(host: string): string {
  return `"${host}" must be an IP address (a resolver cannot depend on DNS to find its upstream)`;
}
