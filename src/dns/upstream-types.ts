/**
 * What the resolver asks of its upstream pool. The pool owns sockets and timers; the resolver
 * hands it one question and gets back the upstream's whole response message.
 */
export interface UpstreamQuestion {
  /** The question name in wire form, lower-case, uncompressed, ending with the root label. */
  nameWire: Buffer;
  /** Presentation form of the name, lower-case, for logs and in-flight keys. */
  name: string;
  qtype: number;
  qclass: number;
  /** EDNS DO bit to send upstream (the client asked for DNSSEC records). */
  dnssecOk: boolean;
  /** CD bit to send upstream. */
  checkingDisabled: boolean;
}

export interface UpstreamAnswer {
  /** The response as the upstream sent it, ID and question already checked. */
  message: Buffer;
  /** host:port of the upstream that answered (a configured, bounded label). */
  upstream: string;
  /** How it came: UDP, TCP after TC=1 on UDP, DoT or DoH. */
  transport: 'udp' | 'tcp' | 'tls' | 'https';
}

/** 'tls': an encrypted upstream's handshake failed or its certificate did not name it. */
export type UpstreamErrorKind = 'timeout' | 'network' | 'tls' | 'malformed' | 'mismatch' | 'truncated';

export interface UpstreamHealth {
  upstream: string;
  healthy: boolean;
  /** Smoothed round-trip time in ms, null before the first answer. */
  rttMs: number | null;
  consecutiveFailures: number;
}

export interface UpstreamResolver {
  /** Resolves or rejects with a PortcullisError PCL_ERR_UPSTREAM_FAILED within the overall deadline. */
  query(question: UpstreamQuestion): Promise<UpstreamAnswer>;
  health(): UpstreamHealth[];
  close(): Promise<void>;
}
