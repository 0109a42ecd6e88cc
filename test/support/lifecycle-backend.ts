import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { readClientHello } from '../../src/proxy/inspect/client-hello.js';

/**
 * A backend whose every connection plays one way a real server ends a conversation, chosen by
 * the name the client asked for: the SNI of the ClientHello that opens a tunnel, or the Host
 * of an HTTP request (`<behaviour>.life.test`). It records what each connection received and
 * how it ended, so a test can check that an abort or a half-close reached the server too.
 *
 * Behaviours (the server's side):
 *   answer-close    answers the first bytes, then FIN (the server closes first)
 *   answer-wait     answers, then waits for the client's FIN before closing
 *   answer-destroy  answers and closes both ways at once (the client may write after that)
 *   reset           resets the connection on the first bytes, answering nothing
 *   reset-mid       sends part of an answer, then resets
 *   half-close-server  answers and FINs at once, then keeps reading the client's upload
 *   half-close-client  reads until the client's FIN, then answers with the bytes it got
 *   silent          reads, never answers, never closes
 */
export const BEHAVIOURS = ['answer-close', 'answer-wait', 'answer-destroy', 'reset', 'reset-mid', 'half-close-server', 'half-close-client', 'silent'] as const;
export type Behaviour = (typeof BEHAVIOURS)[number];

export interface BackendConnection {
  behaviour: Behaviour | null;
  /** Bytes received in all. */
  received: number;
  /** Bytes received after the server's own FIN (half-close-server). */
  receivedAfterFin: number;
  /** How the connection ended for the server: 'end' (FIN from the proxy), 'error' (reset), or null while open. */
  ended: 'end' | 'error' | null;
  closed: Promise<void>;
}

export interface LifecycleBackend {
  port: number;
  connections: BackendConnection[];
  close(): Promise<void>;
}

const ANSWER = 'answer';

function httpAnswer(behaviour: Behaviour, body: string): string {
  switch (behaviour) {
    case 'answer-close':
    case 'answer-destroy':
      return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`;
    case 'half-close-server':
      // Close-delimited: the body ends with the server's FIN.
      return `HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n${body}`;
    case 'reset-mid':
      return `HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n${body}`;
    default:
      return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  }
}

/** The behaviour a connection's first bytes ask for: from the SNI, else from the Host field. */
function behaviourOf(first: Buffer): Behaviour | null {
  let name: string | null;
  const hello = readClientHello(first, 65_536);
  if (hello.kind === 'found') name = hello.sni;
  else {
    const host = /\r\nhost:\s*([^\r\n:]+)/i.exec(first.toString('latin1'));
    name = host?.[1]?.toLowerCase() ?? null;
  }
  const behaviour = name?.split('.')[0];
  return BEHAVIOURS.find((b) => b === behaviour) ?? null;
}

/** `http`: answers are HTTP responses; otherwise raw bytes (a tunnel's payload). */
export async function startLifecycleBackend(options: { http: boolean; host?: string }): Promise<LifecycleBackend> {
  const connections: BackendConnection[] = [];
  const sockets = new Set<Socket>();
  const answer = (behaviour: Behaviour, body = ANSWER): string => (options.http ? httpAnswer(behaviour, body) : body);
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    let resolveClosed = (): void => undefined;
    const record: BackendConnection = {
      behaviour: null,
      received: 0,
      receivedAfterFin: 0,
      ended: null,
      closed: new Promise<void>((resolve) => {
        resolveClosed = resolve;
      }),
    };
    connections.push(record);
    let isServerFinSent = false;
    socket.on('error', () => {
      record.ended ??= 'error';
    });
    socket.on('close', () => {
      sockets.delete(socket);
      resolveClosed();
    });
    socket.on('end', () => {
      record.ended ??= 'end';
      if (record.behaviour === 'half-close-client') socket.end(answer('half-close-client', `got ${record.received}`));
      else if (record.behaviour !== 'silent') socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      record.received += chunk.length;
      if (isServerFinSent) record.receivedAfterFin += chunk.length;
      if (record.behaviour !== null) return;
      const behaviour = behaviourOf(chunk);
      record.behaviour = behaviour;
      switch (behaviour) {
        case 'answer-close':
          socket.end(answer(behaviour));
          isServerFinSent = true;
          break;
        case 'answer-wait':
          socket.write(answer(behaviour));
          break;
        case 'answer-destroy':
          socket.write(answer(behaviour), () => socket.destroy());
          break;
        case 'reset':
          socket.resetAndDestroy();
          break;
        case 'reset-mid':
          socket.write(answer(behaviour, 'partial'), () => setTimeout(() => socket.resetAndDestroy(), 20));
          break;
        case 'half-close-server':
          socket.end(answer(behaviour));
          isServerFinSent = true;
          break;
        case 'half-close-client':
        case 'silent':
        case null:
          break;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, options.host ?? '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
