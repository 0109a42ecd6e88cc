import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
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
  close(): Promise<void>;
}

const TYPES: Record<FakeRecord['type'], number> = { A: 1, AAAA: 28, CNAME: 5, TXT: 16 };

function answer(upstream: FakeUpstream, query: Buffer, transport: 'udp' | 'tcp'): Buffer | null {
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
  if (response.answers.length === 0 && !upstream.records.has(name)) {
    response.header.rcode = 3;
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
  const udp: UdpSocket = createSocket('udp4');
  const tcp: Server = createServer();
  const upstream: FakeUpstream = {
    address: '127.0.0.1',
    port: 0,
    target: '',
    queries: [],
    records: new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v])),
    isSilent: false,
    truncateOverUdp: new Set(),
    close: () =>
      new Promise<void>((resolve) => {
        udp.close(() => {
          tcp.close(() => {
            resolve();
          });
        });
      }),
  };
  udp.on('message', (msg, rinfo) => {
    const out = answer(upstream, msg, 'udp');
    if (out !== null) udp.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  upstream.port = udp.address().port;
  tcp.on('connection', (socket) => {
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
  await new Promise<void>((resolve) => tcp.listen(upstream.port, '127.0.0.1', resolve));
  upstream.target = `127.0.0.1:${upstream.port}`;
  return upstream;
}
