/**
 * What a protocol reader says about the bytes a client has sent so far. Readers only read and
 * annotate; the policy decides; the listener acts (Envoy's tls_inspector split).
 *
 * - need-more: the message is not complete yet; call again with more bytes.
 * - found:     the destination name (normalised: lower-case, no trailing dot) and what else was
 *              read; `consumed` bytes make up the message (what must be replayed upstream).
 * - no-name:   a complete, well-formed message without a destination name.
 * - invalid:   not this protocol, or malformed; `reason` is a bounded code for metrics.
 */
export type SniffResult<Found> =
  | { kind: 'need-more' }
  | ({ kind: 'found'; consumed: number } & Found)
  | { kind: 'no-name'; consumed: number }
  | { kind: 'invalid'; reason: string };
