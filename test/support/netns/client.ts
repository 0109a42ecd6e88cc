/**
 * The client side of the transparent-gateway test, run inside the client namespace; prints one
 * JSON line.
 *
 *   tcp HOST PORT PAYLOAD [GAP_MS]
 *                           connect, send PAYLOAD ("-" sends nothing; "|" splits it into pieces
 *                           sent GAP_MS apart), collect what comes back
 *   lifecycle SCENARIO HOST PORT REPS
 *                           play one way a connection can end, REPS times one after the other,
 *                           and report how each went (see SCENARIOS)
 *   hold HOST PORT          connect, send "hello", wait for the echo, print {"ready":true}; at
 *                           each line on stdin write again (every 100 ms until a write fails or
 *                           1.5 s pass), print how it went
 *   quichold HOST PORT NAME send a ClientHello for NAME, print {"ready":true,"replies":N}; at each
 *                           line on stdin send one more datagram on the same flow, print the
 *                           replies that came within 500 ms
 *   quic HOST PORT NAME PIECES VERSION EXTRA [reverse]
 *                           send a ClientHello for NAME in PIECES Initial packets (QUIC v1 or
 *                           v2; last first with "reverse"), then EXTRA more datagrams, and
 *                           collect the answers
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { QUIC_V1, QUIC_V2 } from '../../../src/proxy/inspect/quic-initial.js';
import { createInterface } from 'node:readline';
import { simpleHello } from '../client-hello.js';
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

interface Outcome {
  data: string;
  error: string | null;
  ended: boolean;
  closed: boolean;
  ms: number;
}

/**
 * Each scenario, from the client's side: what it sends and when it ends. The server side is
 * chosen by the port (servers.ts): echo, banner (speaks first and closes), reset, count
 * (answers after the client's FIN), half-close (FINs first, reads on).
 */
const SCENARIOS: Record<string, (socket: Socket, done: () => void) => void> = {
  'server-fin': (socket, done) => socket.on('end', () => done()),
  'client-fin': (socket) => {
    socket.write('hello');
    socket.once('data', () => socket.end());
  },
  'client-rst': (socket, done) => {
    socket.write('hello');
    socket.once('data', () => {
      socket.resetAndDestroy();
      done();
    });
  },
  'upstream-rst': (socket) => socket.write('hello'),
  'half-close-client': (socket) => {
    socket.write(Buffer.alloc(100_000, 0x61));
    socket.end();
  },
  'half-close-server': (socket) => {
    socket.on('end', () => {
      socket.write(Buffer.alloc(100_000, 0x62));
      socket.end();
    });
  },
  'write-after-close': (socket) => {
    socket.on('end', () => {
      socket.write('more');
      setTimeout(() => socket.end(), 20);
    });
  },
  'abort-before': (socket, done) => {
    socket.resetAndDestroy();
    done();
  },
  'abort-mid-hello': (socket, done) => {
    const hello = simpleHello('www.example.org');
    socket.write(hello.subarray(0, hello.length >> 1));
    setTimeout(() => {
      socket.resetAndDestroy();
      done();
    }, 20);
  },
  'blocked-sni': (socket) => {
    socket.write(simpleHello('talk-pilsner.kakao.com'));
    socket.on('end', () => socket.end());
  },
  'send': (socket) => {
    socket.write('hello');
    socket.on('end', () => socket.end());
  },
  'idle': (socket) => {
    socket.write('hello');
    socket.on('end', () => socket.end());
  },
};

function playOnce(scenario: string): Promise<Outcome> {
  const play = SCENARIOS[scenario];
  if (play === undefined) throw new Error(`unknown scenario ${scenario}`);
  return new Promise((resolve) => {
    const started = performance.now();
    const seen: Outcome = { data: '', error: null, ended: false, closed: false, ms: 0 };
    const socket = connect({ host, port, allowHalfOpen: true });
    let isDone = false;
    const done = (): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      seen.ms = Math.round(performance.now() - started);
      socket.destroy();
      resolve(seen);
    };
    const timer = setTimeout(done, 5_000);
    socket.on('data', (chunk: Buffer) => (seen.data += chunk.toString('latin1')));
    socket.on('end', () => (seen.ended = true));
    socket.on('error', (err: NodeJS.ErrnoException) => (seen.error ??= err.code ?? err.message));
    socket.on('close', () => {
      seen.closed = true;
      done();
    });
    socket.once('connect', () => play(socket, done));
  });
}

async function runLifecycle(scenario: string, reps: number): Promise<{ outcomes: Outcome[] }> {
  const outcomes: Outcome[] = [];
  for (let i = 0; i < reps; i++) outcomes.push(await playOnce(scenario));
  return { outcomes };
}

/** A long-lived connection written to on demand: how the gateway ends flows a policy change blocks. */
function hold(): void {
  const socket = connect({ host, port });
  let error: string | null = null;
  let erroredAt = 0;
  let data = '';
  socket.on('error', (err: NodeJS.ErrnoException) => {
    error ??= err.code ?? err.message;
    erroredAt = performance.now();
  });
  socket.on('data', (chunk: Buffer) => {
    data += chunk.toString('latin1');
    if (data === 'echo hello') print({ ready: true });
  });
  socket.once('connect', () => socket.write('hello'));
  createInterface({ input: process.stdin }).on('line', () => {
    const asked = performance.now();
    if (error !== null) {
      print({ error, before: true, ms: Math.round(asked - erroredAt) });
      return;
    }
    const check = setInterval(() => {
      if (error === null && performance.now() - asked < 1_500) {
        if (!socket.destroyed) socket.write('again');
        return;
      }
      clearInterval(check);
      print({ error, before: false, ms: Math.round((error === null ? performance.now() : erroredAt) - asked) });
    }, 100);
    socket.write('again');
  });
}

/** One QUIC flow kept open: more datagrams on demand, the replies each brings. */
function quicHold(name: string): void {
  const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  let replies = 0;
  socket.on('message', () => replies++);
  socket.bind(0, () => {
    const datagrams = clientInitials(browserHello(name), { version: QUIC_V1, pieces: 2 });
    datagrams.forEach((datagram, i) => setTimeout(() => socket.send(datagram, port, host), i * 30));
    setTimeout(() => print({ ready: true, replies }), QUIC_WAIT_MS);
  });
  createInterface({ input: process.stdin }).on('line', () => {
    const before = replies;
    socket.send(Buffer.from('one more datagram'), port, host);
    setTimeout(() => print({ replies: replies - before }), 500);
  });
}

// The command line, read once everything above is defined.
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
    // hex:<bytes> sends binary (a LOCO handshake) in one write; otherwise "|" separates pieces.
    if (payload.startsWith('hex:')) {
      socket.write(Buffer.from(payload.slice(4), 'hex'));
      return;
    }
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
} else if (command === 'lifecycle') {
  const [scenario = '', repsText = '1'] = rest;
  void runLifecycle(scenario, Number(repsText)).then(print);
} else if (command === 'hold') {
  hold();
} else if (command === 'quichold') {
  quicHold(rest[0] ?? '');
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
