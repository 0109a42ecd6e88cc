import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { Packet } from 'dns2';

/**
 * A small authoritative-style upstream for tests: answers from a table of records, over UDP
 * and TCP on 127.0.0.1, counts what it received, and can be told to go silent. Answers are
 * encoded with dns2's Packet (test side only).
 */
export interface FakeRecord {
  type: 'A' | 'AAAA' | 'CNAME' | 'TXT';
  value: string;
  ttl?: number;
}

export interface FakeUpstream {
  address: string;
  port: number;
  /** host:port, for dns.upstreams. */
  target: string;
  queries: { name: string; type: number; transport: 'udp' | 'tcp' }[];
  records: Map<string, FakeRecord[]>;
  /** When true, nothing is answered (a dead upstream). */
  isSilent: boolean;
  /** Names whose UDP answers are sent with TC=1 and no records. */
  truncateOverUdp: Set<string>;
  /**
   * Names answered by hand: the function gets the raw query and returns the whole response
   * (for record types dns2 cannot write, such as HTTPS with an ech parameter).
   */
  custom: Map<string, (query: Buffer) => Buffer>;
  close(): Promise<void>;
}

const TYPES: Record<FakeRecord['type'], number> = { A: 1, AAAA: 28, CNAME: 5, TXT: 16 };

/** Never throws: a query this table cannot answer (odd names from a fuzz run) gets no answer. */
function answer(upstream: FakeUpstream, query: Buffer, transport: 'udp' | 'tcp'): Buffer | null {
  try {
    return answerOrThrow(upstream, query, transport);
  } catch {
    return null;
  }
}

function answerOrThrow(upstream: FakeUpstream, query: Buffer, transport: 'udp' | 'tcp'): Buffer | null {
  let request: ReturnType<typeof Packet.parse>;
  try {
    request = Packet.parse(query);
  } catch {
    return null;
  }
  const question = request.questions[0];
  if (question === undefined) return null;
  const name = question.name.toLowerCase();
  upstream.queries.push({ name, type: question.type, transport });
  if (upstream.isSilent) return null;
  const custom = upstream.custom.get(name);
  if (custom !== undefined) return custom(query);
  const response = Packet.createResponseFromRequest(request);
  response.header.ra = 1;
  if (transport === 'udp' && upstream.truncateOverUdp.has(name)) {
    response.header.tc = 1;
    return response.toBuffer();
  }
  let current = name;
  for (let hops = 0; hops < 8; hops++) {
    const records = upstream.records.get(current) ?? [];
    const cname = records.find((r) => r.type === 'CNAME');
    for (const record of records) {
      if (record.type !== 'CNAME' && TYPES[record.type] !== question.type) continue;
      const base = { name: current, type: TYPES[record.type], class: 1, ttl: record.ttl ?? 300 };
      if (record.type === 'A' || record.type === 'AAAA') (response.answers as object[]).push({ ...base, address: record.value });
      else if (record.type === 'CNAME') (response.answers as object[]).push({ ...base, domain: record.value });
      else (response.answers as object[]).push({ ...base, data: record.value });
    }
    if (cname === undefined || question.type === TYPES.CNAME) break;
    current = cname.value.toLowerCase();
  }
  // NXDOMAIN for an unknown name, NODATA for a known one without that type; both carry the
  // zone's SOA, as real servers' negative answers do (RFC 2308: what makes them cacheable).
  if (response.answers.length === 0) {
    if (!upstream.records.has(name)) response.header.rcode = 3;
    (response.authorities as object[]).push({
      name: name.split('.').slice(-1)[0] ?? '',
      type: 6,
      class: 1,
      ttl: 300,
      primary: 'ns.test',
      admin: 'hostmaster.test',
      serial: 1,
      refresh: 3600,
      retry: 600,
      expiration: 86400,
      minimum: 120,
    });
  }
  return response.toBuffer();
}

export async function startFakeUpstream(records: Record<string, FakeRecord[]> = {}): Promise<FakeUpstream> {
  let udp: UdpSocket = createSocket('udp4');
  const tcp: Server = createServer();
  const connections = new Set<Socket>();
  const upstream: FakeUpstream = {
    address: '127.0.0.1',
    port: 0,
    target: '',
    queries: [],
    records: new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v])),
    isSilent: false,
    truncateOverUdp: new Set(),
    custom: new Map(),
    close: () =>
      new Promise<void>((resolve) => {
        udp.close(() => {
          for (const socket of connections) socket.destroy();
          tcp.close(() => {
            resolve();
          });
        });
      }),
  };
  // UDP takes a free port, TCP the same one; another TCP socket may hold it, then try again.
  for (let attempt = 0; ; attempt++) {
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    upstream.port = udp.address().port;
    const error = await new Promise<Error | null>((resolve) => {
      tcp.once('error', resolve);
      tcp.listen(upstream.port, '127.0.0.1', () => {
        tcp.off('error', resolve);
        resolve(null);
      });
    });
    if (error === null) break;
    if (attempt >= 20) throw error;
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    udp = createSocket('udp4');
  }
  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => connections.delete(socket));
    let buffered = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        const out = answer(upstream, Buffer.from(message), 'tcp');
        if (out !== null) {
          const frame = Buffer.alloc(2 + out.length);
          frame.writeUInt16BE(out.length, 0);
          out.copy(frame, 2);
          socket.write(frame);
        }
      }
    });
  });
  const udpSocket = udp;
  udpSocket.on('message', (msg, rinfo) => {
    const out = answer(upstream, msg, 'udp');
    if (out !== null) udpSocket.send(out, rinfo.port, rinfo.address, () => undefined);
  });
  upstream.target = `127.0.0.1:${upstream.port}`;
  return upstream;
}
