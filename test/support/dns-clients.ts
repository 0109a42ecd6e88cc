import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect as connectHttp2, constants as HTTP2 } from 'node:http2';
import { request } from 'node:https';
import { connect, type Socket } from 'node:net';

/**
 * Real DNS clients for integration tests: dig and kdig spawned (Debian bind9-dnsutils and
 * knot-dnsutils), plus small raw UDP/TCP/DoH exchanges for byte-level checks. Loopback only.
 */

export interface DigRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface DigResult {
  status: string;
  flags: string[];
  question: { name: string; type: string } | null;
  answers: DigRecord[];
  authority: DigRecord[];
  hasOpt: boolean;
  ede: { code: number; text: string } | null;
  /** The transport of the answer printed (dig's SERVER line). */
  transport: 'UDP' | 'TCP' | 'TLS' | null;
  /** dig said the UDP answer was truncated and retried over TCP. */
  retriedOverTcp: boolean;
}

function run(command: string, args: string[], timeoutMs: number): Promise<{ stdout: string; code: number }> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8', timeout: timeoutMs }, (error, stdout) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ stdout, code });
    });
  });
}

function records(block: string, section: string): DigRecord[] {
  const match = new RegExp(`^;; ${section} SECTION:\\n((?:[^\\n]+\\n)*)`, 'm').exec(block);
  if (match === null) return [];
  return match[1]!
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith(';'))
    .map((line) => {
      const [name = '', ttl = '0', , type = '', ...data] = line.split(/\s+/);
      return { name, ttl: Number(ttl), type, data: data.join(' ') };
    });
}

/** Splits dig output (one or many queries) into one result per answer printed. */
export function parseDig(stdout: string): DigResult[] {
  // not anchored: dig cuts its long command echo without a newline before the first one
  const chunks = stdout.split(/;; Got answer:\n/);
  const out: DigResult[] = [];
  for (let i = 1; i < chunks.length; i++) {
    const block = chunks[i]!;
    const status = /status: ([A-Z0-9]+)/.exec(block)?.[1] ?? '';
    const flags = (/;; flags: ([^;]*);/.exec(block)?.[1] ?? '').trim().split(/\s+/);
    const question = /^;; QUESTION SECTION:\n;(\S+)\s+\S+\s+(\S+)/m.exec(block);
    const ede = /^; EDE: (\d+)[^:\n]*:(?: \((.*)\))?$/m.exec(block);
    const transport = /^;; SERVER: .*\((UDP|TCP|TLS)\)$/m.exec(block)?.[1] as DigResult['transport'] | undefined;
    out.push({
      status,
      flags,
      question: question === null ? null : { name: question[1]!, type: question[2]! },
      answers: records(block, 'ANSWER'),
      authority: records(block, 'AUTHORITY'),
      hasOpt: block.includes(';; OPT PSEUDOSECTION:'),
      ede: ede === null ? null : { code: Number(ede[1]), text: ede[2] ?? '' },
      transport: transport ?? null,
      retriedOverTcp: chunks[i - 1]!.includes(';; Truncated, retrying in TCP mode.'),
    });
  }
  return out;
}

/** `dig @127.0.0.1 -p port +tries=1 +time=2 ...args`; the results of every query in args. */
export async function dig(port: number, args: string[]): Promise<DigResult[]> {
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=2', ...args], 20_000);
  return parseDig(stdout);
}

export async function digOne(port: number, args: string[]): Promise<DigResult> {
  const results = await dig(port, args);
  if (results.length !== 1) throw new Error(`dig ${args.join(' ')}: expected one answer, got ${results.length}`);
  return results[0]!;
}

export interface KdigResult {
  status: string;
  flags: string[];
  answers: DigRecord[];
  ede: { code: number; text: string } | null;
  question: { name: string; type: string } | null;
}

/** Splits kdig output into one result per answer. */
export function parseKdig(stdout: string): KdigResult[] {
  const chunks = stdout.split(/^;; ->>HEADER<<-/m).slice(1);
  return chunks.map((block) => {
    const answerSection = /^;; ANSWER SECTION:\n((?:[^\n]+\n)*)/m.exec(block)?.[1] ?? '';
    const question = /^;; QUESTION SECTION:\n;; (\S+)\s+\S+\s+(\S+)/m.exec(block);
    const ede = /^;; EDE: (\d+)[^:\n]*:?\s*(?:'(.*)'|"(.*)"|\((.*)\))?/m.exec(block);
    return {
      status: /status: ([A-Z0-9]+)/.exec(block)?.[1] ?? '',
      flags: (/;; Flags: ([^;]*);/.exec(block)?.[1] ?? '').trim().split(/\s+/),
      answers: answerSection
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith(';'))
        .map((line) => {
          const [name = '', ttl = '0', , type = '', ...data] = line.split(/\s+/);
          return { name, ttl: Number(ttl), type, data: data.join(' ') };
        }),
      ede: ede === null ? null : { code: Number(ede[1]), text: ede[2] ?? ede[3] ?? ede[4] ?? '' },
      question: question === null ? null : { name: question[1]!, type: question[2]! },
    };
  });
}

export async function kdig(port: number, args: string[]): Promise<{ results: KdigResult[]; stdout: string }> {
  const { stdout } = await run('kdig', ['@127.0.0.1', '-p', String(port), '+retry=0', '+time=2', ...args], 20_000);
  return { results: parseKdig(stdout), stdout };
}

/** One UDP exchange from a fresh socket; null when nothing comes back within the timeout. */
export function udpExchange(port: number, packet: Buffer, timeoutMs = 1_500): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
    socket.on('message', (message) => {
      clearTimeout(timer);
      socket.close();
      resolve(message);
    });
    socket.bind(0, '127.0.0.1', () => {
      socket.send(packet, port, '127.0.0.1');
    });
  });
}

export function frame(message: Buffer): Buffer {
  const out = Buffer.alloc(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}

export interface TcpConversation {
  socket: Socket;
  /** Responses in arrival order. */
  responses: Buffer[];
  /** Resolves once `count` responses have arrived (or the connection closed first). */
  waitFor(count: number, timeoutMs?: number): Promise<Buffer[]>;
  closed: Promise<void>;
}

/** A TCP connection that collects framed responses. */
export function tcpConnect(port: number): Promise<TcpConversation> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const responses: Buffer[] = [];
    let buffered = Buffer.alloc(0);
    let onChange = (): void => undefined;
    const closed = new Promise<void>((done) => {
      socket.on('close', () => {
        done();
        onChange();
      });
    });
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const length = buffered.readUInt16BE(0);
        responses.push(Buffer.from(buffered.subarray(2, 2 + length)));
        buffered = buffered.subarray(2 + length);
      }
      onChange();
    });
    const waitFor = (count: number, timeoutMs = 3_000): Promise<Buffer[]> =>
      new Promise((done) => {
        const timer = setTimeout(() => {
          onChange = () => undefined;
          done(responses);
        }, timeoutMs);
        onChange = () => {
          if (responses.length >= count || socket.destroyed) {
            clearTimeout(timer);
            onChange = () => undefined;
            done(responses);
          }
        };
        onChange();
      });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve({ socket, responses, waitFor, closed });
    });
    socket.once('error', reject);
  });
}

/** A DoH request (self-signed server, so no certificate check). */
export function dohRequest(port: number, options: { method: 'GET' | 'POST' | 'PUT'; path: string; body?: Buffer; contentType?: string }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method,
        path: options.path,
        rejectUnauthorized: false,
        headers: {
          accept: 'application/dns-message',
          ...(options.contentType === undefined ? {} : { 'content-type': options.contentType }),
          ...(options.body === undefined ? {} : { 'content-length': options.body.length }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('DoH request timed out')));
    req.end(options.body);
  });
}

export interface DohReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * DoH requests over one HTTP/2 connection (self-signed server, no certificate check): all sent at
 * once as concurrent streams, answered in any order. `remoteSettings` is what the server announced.
 */
export async function doh2Requests(port: number, requests: { method: 'GET' | 'POST'; path: string; body?: Buffer; contentType?: string }[]): Promise<{ replies: DohReply[]; remoteSettings: { maxConcurrentStreams?: number } }> {
  const session = connectHttp2(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  try {
    await new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', () => resolve());
      session.once('error', reject);
    });
    const replies = await Promise.all(
      requests.map(
        (r) =>
          new Promise<DohReply>((resolve, reject) => {
            const stream = session.request({
              [HTTP2.HTTP2_HEADER_METHOD]: r.method,
              [HTTP2.HTTP2_HEADER_PATH]: r.path,
              accept: 'application/dns-message',
              ...(r.contentType === undefined ? {} : { 'content-type': r.contentType }),
            });
            const chunks: Buffer[] = [];
            let headers: Record<string, string | string[] | undefined> = {};
            stream.on('response', (h) => (headers = h));
            stream.on('data', (c: Buffer) => chunks.push(c));
            stream.on('end', () => resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks) }));
            stream.on('error', reject);
            stream.setTimeout(5_000, () => stream.destroy(new Error('DoH/2 request timed out')));
            stream.end(r.body);
          }),
      ),
    );
    return { replies, remoteSettings: session.remoteSettings };
  } finally {
    session.destroy();
  }
}

export interface DnspythonResult {
  httpVersion: string;
  rcode: string;
  answers: string[];
  ede: { code: number; text: string }[];
}

/** One query with dnspython's DoH client over httpx (Debian python3-dnspython, -httpx, -h2). */
export async function dnspythonDoh(url: string, name: string, type: string, version: 'h1' | 'h2', method: 'get' | 'post'): Promise<DnspythonResult> {
  const script = new URL('./dnspython-doh.py', import.meta.url).pathname;
  const { stdout, code } = await run('/usr/bin/python3', [script, url, name, type, version, method], 20_000);
  if (code !== 0) throw new Error(`dnspython exited ${code}: ${stdout}`);
  return JSON.parse(stdout) as DnspythonResult;
}

