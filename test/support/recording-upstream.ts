import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request as the upstream's own parser (Node's llhttp) read it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Header names and values exactly as received, in order. */
  rawHeaders: string[];
  body: string;
}

export interface RecordingUpstream {
  port: number;
  requests: SeenRequest[];
  /** Every byte each connection received, as latin1 text. */
  received: string[];
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 server that records what reaches it, byte for byte and as parsed by an
 * independent parser, and answers `200 seen <url>` (keep-alive). Upgrade requests to `/ws`
 * get 101 and an echo of whatever follows; other upgrade requests get 404.
 */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const requests: SeenRequest[] = [];
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      const text = `seen ${req.url ?? ''}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  server.on('connection', (socket: Socket) => {
    const index = received.push('') - 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      received[index] = `${received[index] ?? ''}${chunk.toString('latin1')}`;
    });
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: '' });
    if (req.url !== '/ws') {
      socket.write('HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nno such\r\n');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    if (head.length > 0) socket.write(Buffer.concat([Buffer.from('echo:'), head]));
    socket.on('data', (chunk: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), chunk])));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    received,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
