import { isIPv6 } from 'node:net';
import { listElements } from '../inspect/http-syntax.js';
import type { HeaderField, RequestHead } from '../inspect/request-head.js';

export interface ForwardedHead {
  bytes: Buffer;
  /** The request still asks to switch protocols (after h2c was taken out). */
  isUpgrade: boolean;
}

/**
 * Fields that are the proxy's business, not the server's: Host is set from the destination that
 * was judged, the framing fields are written from the framing that was read, and
 * Proxy-Connection / HTTP2-Settings (an h2c upgrade's) go.
 */
const REWRITTEN = new Set(['host', 'content-length', 'transfer-encoding', 'proxy-connection', 'http2-settings']);

/**
 * The head a request is forwarded with: the canonical re-serialisation of what the reader
 * parsed, never the client's bytes, so a server cannot read it differently from the way it was
 * judged (a bare LF, repeated spaces, a tab after a value all come out as the one canonical
 * form).
 *
 * - Request line: method, the target in origin-form when it came in absolute-form, the version.
 * - Host: the destination that was decided on (for absolute-form, the URI's authority, its port
 *   kept; RFC 9112 3.2.2); the client's own Host never reaches the server then (no domain
 *   fronting past the decision).
 * - Content-Length or Transfer-Encoding: as the reader framed the body.
 * - Upgrade: h2c is taken out (an HTTP/2 tunnel would carry requests for any authority, never
 *   judged), with its HTTP2-Settings and its Connection options.
 * - Every other field: in order, name as sent, value without surrounding whitespace.
 */
export function forwardedHead(head: RequestHead): ForwardedHead {
  const upgrade = tokensOf(head.fields, 'upgrade').filter((token) => !/^h2c(\/|$)/i.test(token));
  const dropOptions = new Set(['http2-settings', ...(upgrade.length === 0 ? ['upgrade'] : [])]);
  const connection = tokensOf(head.fields, 'connection').filter((token) => !dropOptions.has(token.toLowerCase()));
  const lines: string[] = [`${head.method} ${head.forwardTarget} ${head.version}`, `Host: ${authority(head.host!, head.port)}`];
  let isConnectionWritten = false;
  let isUpgradeWritten = false;
  for (const field of head.fields) {
    const name = field.name.toLowerCase();
    if (REWRITTEN.has(name)) continue;
    if (name === 'connection') {
      if (!isConnectionWritten && connection.length > 0) lines.push(`${field.name}: ${connection.join(', ')}`);
      isConnectionWritten = true;
    } else if (name === 'upgrade') {
      if (!isUpgradeWritten && upgrade.length > 0) lines.push(`${field.name}: ${upgrade.join(', ')}`);
      isUpgradeWritten = true;
    } else {
      lines.push(`${field.name}: ${field.value}`);
    }
  }
  if (head.isChunked) lines.push(`Transfer-Encoding: ${tokensOf(head.fields, 'transfer-encoding').join(', ')}`);
  else if (head.contentLength !== null) lines.push(`Content-Length: ${head.contentLength}`);
  return { bytes: Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), isUpgrade: upgrade.length > 0 };
}

/** Elements of every `name` field's list, in order, empty ones dropped. */
function tokensOf(fields: readonly HeaderField[], name: string): string[] {
  return fields.filter((f) => f.name.toLowerCase() === name).flatMap((f) => listElements(f.value).filter((t) => t !== ''));
}

function authority(host: string, port: number | null): string {
  const shown = isIPv6(host) ? `[${host}]` : host;
  return port === null ? shown : `${shown}:${port}`;
}
