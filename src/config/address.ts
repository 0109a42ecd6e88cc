import { isIP } from 'node:net';
import { configInvalid } from '../errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses `host:port`, `[v6]:port` or `name:port`. Returns a problem text instead of throwing,
 * so config checks can collect every problem at once. `allowAnyPort`: port 0 ("any free
 * port") is accepted, for listen addresses.
 */
export function parseHostPort(text: string, options: { defaultPort?: number; allowAnyPort?: boolean } = {}): HostPort | string {
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return `"${text}": missing "]" after an IPv6 address`;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return `"${text}": expected ":port" after "]"`;
    portText = rest === '' ? undefined : rest.slice(1);
    if (isIP(host) !== 6) return `"${text}": "${host}" is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon !== -1 && text.indexOf(':') !== colon) return `"${text}": write IPv6 addresses as [address]:port`;
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
  }
  if (host === '') return `"${text}": host is empty`;
  if (portText === undefined) {
    if (options.defaultPort === undefined) return `"${text}": expected host:port`;
    return { host, port: options.defaultPort };
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return `"${text}": port is not a number`;
  const port = Number(portText);
  if (port === 0 && options.allowAnyPort === true) return { host, port };
  if (port < 1 || port > 65535) return `"${text}": port must be 1-65535`;
  return { host, port };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * A listen address for a listener about to bind (port 0: any free port). A text that does not
 * parse throws PCL_ERR_CONFIG_INVALID naming the field, rather than binding every interface.
 */
export function parseListenAddress(text: string, field: string): HostPort {
  const parsed = parseHostPort(text, { allowAnyPort: true });
  if (typeof parsed === 'string') throw configInvalid([{ file: 'config', field, message: parsed }]);
  return parsed;
}
