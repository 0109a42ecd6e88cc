import { formatIp } from '../match/ip.js';
import type { Logger } from '../observability/logger.js';
import { UDP_BATCH_SLOT_BYTES, type Endpoint, type UdpBatchSocket, type nativeBinding } from '../util/native-addon.js';
import type { DnsClient, DnsReply } from './chain.js';
import type { DnsHandler } from './listeners.js';

/** Slots per batch (BATCH in native/udp-batch.c); client channels count in these steps. */
const BATCH_SLOTS = 64;
/** Sender addresses kept as text; past this many the cache starts over. */
const ADDRESS_CACHE_ENTRIES = 65_536;

/**
 * DNS over UDP on the native batch socket: one JavaScript call per batch of datagrams and one
 * sendmmsg for the answers made during it, instead of a call and a system call per datagram
 * each way (see native/udp-batch.c for why). Each query gets its own copy of its bytes, since
 * a query that waits for the upstream outlives the batch. Answers that come later go out one
 * by one. The chain and everything it decides are the same as on the dgram listener.
 */
export class DnsUdpBatchListener {
  private readonly socket: UdpBatchSocket;
  private readonly handler: DnsHandler;
  private readonly log: Logger;
  private readonly replyTo: DnsReply;
  private readonly addressText = new Map<number, string>();
  /** Channel number of slot 0 of the current batch; earlier batches' channels are below it. */
  private batchBase = 0;
  private isInBatch = false;
  private isClosed = false;

  constructor(binding: NonNullable<ReturnType<typeof nativeBinding>>, handler: DnsHandler, log: Logger) {
    this.handler = handler;
    this.log = log;
    const socket = new binding.UdpBatchSocket((count) => this.onBatch(count));
    this.socket = socket;
    this.replyTo = (message, client) => {
      // An upstream answer may arrive after close: nobody to send it to.
      if (message === null || this.isClosed) return;
      const channel = client.channel;
      if (this.isInBatch && typeof channel === 'number' && channel >= this.batchBase) socket.reply(channel - this.batchBase, message);
      else socket.send(message, client.address, client.port);
    };
  }

  /** Binds; throws with `code` EADDRINUSE (and the like) as net does. */
  listen(port: number, host: string, reusePort: boolean): Endpoint {
    this.socket.bind(host, port, reusePort);
    return this.socket.address();
  }

  close(): void {
    this.isClosed = true;
    this.socket.close();
  }

  private onBatch(count: number): void {
    const { buffer, lengths, ports } = this.socket;
    this.batchBase += BATCH_SLOTS;
    this.isInBatch = true;
    try {
      for (let slot = 0; slot < count; slot++) {
        const length = lengths[slot]!;
        const port = ports[slot]!;
        // Source port 0 cannot be answered; -1 marks a datagram to drop.
        if (length < 0 || port === 0) continue;
        const start = slot * UDP_BATCH_SLOT_BYTES;
        const query = Buffer.from(buffer.subarray(start, start + length));
        const client: DnsClient = { address: this.senderText(slot), port, transport: 'udp', channel: this.batchBase + slot };
        try {
          this.handler(query, client, this.replyTo);
        } catch (e: unknown) {
          this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'dns handler threw (a bug)');
        }
      }
    } finally {
      this.isInBatch = false;
    }
  }

  private senderText(slot: number): string {
    const { addresses, families } = this.socket;
    const at = slot * 16;
    if (families[slot] === 4) {
      const key = addresses.readUInt32BE(at);
      let text = this.addressText.get(key);
      if (text === undefined) {
        if (this.addressText.size >= ADDRESS_CACHE_ENTRIES) this.addressText.clear();
        text = formatIp({ family: 4, words: Uint32Array.of(key) });
        this.addressText.set(key, text);
      }
      return text;
    }
    const words = Uint32Array.of(addresses.readUInt32BE(at), addresses.readUInt32BE(at + 4), addresses.readUInt32BE(at + 8), addresses.readUInt32BE(at + 12));
    // An IPv4 client of a dual-stack socket, written as dgram writes it.
    if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return `::ffff:${formatIp({ family: 4, words: words.subarray(3) })}`;
    return formatIp({ family: 6, words });
  }
}
