/**
 * The client side of the transparent-gateway test, run inside the client namespace; prints one
 * JSON line.
 *
 *   tcp HOST PORT PAYLOAD [GAP_MS]
 *                           connect, send PAYLOAD ("-" sends nothing; "|" splits it into pieces
 *                           sent GAP_MS apart), collect what comes back
 *   quic HOST PORT NAME PIECES VERSION EXTRA [reverse]
 *                           send a ClientHello for NAME in PIECES Initial packets (QUIC v1 or
 *                           v2; last first with "reverse"), then EXTRA more datagrams, and
 *                           collect the answers
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { QUIC_V1, QUIC_V2 } from '../../../src/proxy/inspect/quic-initial.js';
import { browserHello, clientInitials } from '../quic-initial.js';

const WAIT_MS = 2_500;
const SETTLE_MS = 100;
/** How long answers to QUIC datagrams are waited for (the relay answers within milliseconds). */
const QUIC_WAIT_MS = 1_000;
const [command, host = '', portText = '0', ...rest] = process.argv.slice(2);
const port = Number(portText);

function print(result: unknown): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (command === 'tcp') {
  const payload = rest[0] ?? '-';
  const gapMs = Number(rest[1] ?? '0');
  let data = '';
  let connected = false;
  const socket = connect({ host, port });
  let isFinished = false;
  const finish = (error: string | null): void => {
    if (isFinished) return;
    isFinished = true;
    clearTimeout(timer);
    socket.destroy();
    print({ connected, data, error });
  };
  const timer = setTimeout(() => finish(null), WAIT_MS);
  socket.on('connect', () => {
    connected = true;
    if (payload === '-') return;
    payload.split('|').forEach((piece, i) => setTimeout(() => socket.write(piece), i * gapMs));
  });
  socket.on('data', (chunk: Buffer) => {
    data += chunk.toString('latin1');
    // An answer came: whatever else follows it arrives within a moment.
    timer.refresh();
    setTimeout(() => finish(null), SETTLE_MS);
  });
  socket.on('end', () => finish(null));
  socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
} else if (command === 'quic') {
  const [name = '', piecesText = '2', versionText = '1', extraText = '0', order = 'in-order'] = rest;
  const version = versionText === '2' ? QUIC_V2 : QUIC_V1;
  const datagrams = clientInitials(browserHello(name), { version, pieces: Number(piecesText) });
  if (order === 'reverse') datagrams.reverse();
  for (let i = 0; i < Number(extraText); i++) datagrams.push(Buffer.from(`extra datagram ${i}`));
  const replies: { from: string; data: string }[] = [];
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  socket.on('message', (data, from) => replies.push({ from: `${from.address}:${from.port}`, data: data.toString('latin1') }));
  socket.bind(0, () => {
    datagrams.forEach((datagram, i) => setTimeout(() => socket.send(datagram, port, host), i * 30));
    setTimeout(() => {
      socket.close();
      print({ replies });
    }, QUIC_WAIT_MS + datagrams.length * 30);
  });
} else {
  process.stderr.write(`unknown command ${String(command)}\n`);
  process.exit(2);
}
