/**
 * The far side of the transparent-gateway test, run inside the server namespace: HTTPS on 443
 * (answers with the SNI it saw), HTTP on 80 (answers with the Host), TCP echo servers (LOCO-
 * like raw TCP), a server-first banner service, and a UDP responder on 443 that acknowledges
 * each datagram with a per-client count. Prints "ready" once everything listens.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type Server } from 'node:net';

interface ServersConfig {
  cert: string;
  key: string;
  echoPorts: number[];
  bannerPort: number;
  /** Resets every connection on its first bytes. */
  resetPort: number;
  /** Reads until the client's FIN, then answers `got N` and closes. */
  countPort: number;
  /** Says `bye` and FINs at once, then reads on until the client's FIN. */
  halfClosePort: number;
  udpAddresses: string[];
}

const config = JSON.parse(process.argv[2] ?? '{}') as ServersConfig;
const listening: Promise<void>[] = [];
// '::' is dual-stack: IPv4 and IPv6 clients alike.
const listen = (server: Server, port: number): void => {
  listening.push(new Promise((resolve, reject) => server.once('error', reject).listen(port, '::', () => resolve())));
};

listen(
  createHttpsServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) }, (req, res) => {
    const servername = (req.socket as { servername?: string | false }).servername;
    res.end(`tls ${servername === false || servername === undefined ? '-' : servername} ${req.headers.host ?? '-'}`);
  }),
  443,
);
listen(
  createHttpServer((req, res) => res.end(`http ${req.headers.host ?? '-'}`)),
  80,
);
for (const port of config.echoPorts) {
  listen(
    createTcpServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.on('data', (data) => socket.write(`echo ${data.toString('latin1')}`));
    }),
    port,
  );
}
listen(
  createTcpServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end('220 banner\r\n');
  }),
  config.bannerPort,
);
listen(
  createTcpServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', () => socket.resetAndDestroy());
  }),
  config.resetPort,
);
listen(
  createTcpServer({ allowHalfOpen: true }, (socket) => {
    let received = 0;
    socket.on('error', () => socket.destroy());
    socket.on('data', (data) => (received += data.length));
    socket.on('end', () => socket.end(`got ${received}`));
  }),
  config.countPort,
);
listen(
  createTcpServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.end('bye');
    socket.resume();
  }),
  config.halfClosePort,
);

// One UDP socket per address: a socket bound to 0.0.0.0 would answer from whichever address
// the route picks, not the one the client wrote to (as real QUIC servers bind each address).
const counts = new Map<string, number>();
for (const address of config.udpAddresses) {
  const udp = createSocket(address.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (data, from) => {
    const key = `${from.address}:${from.port}`;
    const count = (counts.get(key) ?? 0) + 1;
    counts.set(key, count);
    udp.send(`ack ${count} ${data.length}`, from.port, from.address);
  });
  listening.push(new Promise((resolve) => udp.bind(443, address, () => resolve())));
}

await Promise.all(listening);
process.stdout.write('ready\n');
