/**
 * What the proxy sends a connection it refuses (sniproxy's "abort bytes"): for TLS a fatal
 * handshake_failure alert (or a TCP reset when configured); for HTTP a status page. The
 * connection's owner sends them and closes; this module only says what they are.
 */
export const TLS_ALERT_HANDSHAKE_FAILURE = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);

export type TlsBlockAction = 'alert' | 'rst';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large',
  451: 'Unavailable For Legal Reasons',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A short response that closes the connection. 451 pages name the app that is blocked (its display name). */
export function httpStatusResponse(status: number, detail: { appName?: string | null; host?: string } = {}): Buffer {
  const text = STATUS_TEXT[status] ?? 'Error';
  let body: string;
  if (status === 451) {
    const what = detail.appName === null || detail.appName === undefined ? 'This site' : `This service (${escapeHtml(detail.appName)})`;
    body = `<!doctype html><html><head><meta charset="utf-8"><title>Blocked</title></head><body><h1>Blocked</h1><p>${what} is blocked on this network${detail.host === undefined ? '' : `: ${escapeHtml(detail.host)}`}.</p></body></html>\n`;
  } else {
    body = `${status} ${text}\n`;
  }
  const type = status === 451 ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8';
  return Buffer.from(`HTTP/1.1 ${status} ${text}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n${body}`);
}
