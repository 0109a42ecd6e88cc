import type { Logger } from '../observability/logger.js';
import type { BlockEvent, Decision, DecisionQuery } from '../policy/index.js';
import { blockedAnswer, type BlockOptions } from './block.js';
import { AnswerCache, cacheKey, serveUncached, type CacheEntry } from './cache.js';
import { PortcullisError, isPortcullisError } from '../errors.js';
import type { ClientAcl } from '../match/client-acl.js';
import type { ClientRateLimiter } from './client-limits.js';
import { CANARY_BLOCK, inspectAnswer, isPolicyDecision, judgeQueryName, type NameJudgeOptions } from './inspection.js';
import { buildAnswer, maxUdpResponse, truncateForUdp, walkResponse } from './message.js';
import { prepareUpstreamAnswer } from './rewrite.js';
import type { UpstreamResolver } from './upstream-types.js';
import { CLASS_IN, RCODE, encodeName, parseQuery, type Query } from './wire.js';

export type DnsTransport = 'udp' | 'tcp' | 'dot' | 'doh';
export type DnsResult = 'allowed' | 'blocked' | 'cached' | 'servfail' | 'refused' | 'formerr' | 'dropped';

export interface DnsClient {
  address: string;
  port: number;
  transport: DnsTransport;
  /** Listener-owned handle to answer on (a TCP socket, an HTTP response); opaque here. */
  channel?: unknown;
}

/** Sends an answer to the client; one function per listener, so the hot path builds no closure. */
/** `null`: the query gets no answer (dropped); stream listeners stop waiting for it. */
export type DnsReply = (message: Buffer | null, client: DnsClient) => void;

export interface PolicyView {
  decide(query: DecisionQuery): Decision;
  readonly version: number;
  /** The doh-bypass category's names in force (they change with the catalog). */
  readonly dohResolvers: NameSet;
}

export interface NameSet {
  /** The entry matching the name or one of its parents, or null. */
  match(name: string): string | null;
}

export interface DnsChainOptions extends NameJudgeOptions {
  upstream: UpstreamResolver;
  cache: AnswerCache;
  acl: ClientAcl;
  rateLimiter: ClientRateLimiter;
  rateLimitAction: 'refused' | 'drop';
  block: BlockOptions;
  /** Remove `ech` from HTTPS/SVCB answers so the TLS layer keeps seeing real SNI. */
  stripEch: boolean;
  logger: Logger;
  /** Called once per query with its outcome (metrics attach here). */
  onResult?: (result: DnsResult, transport: DnsTransport, startedMs: number, blockedBy: Decision | null) => void;
  /** Called for every blocked query (the decisions log attaches here). */
  onBlocked?: (block: BlockEvent) => void;
}


/** RFC 8914 codes for an answer the upstreams could not give. */
export const EDE_OTHER = 0;
export const EDE_NO_REACHABLE_AUTHORITY = 22;
export const EDE_NETWORK_ERROR = 23;

/**
 * Why SERVFAIL, as an Extended DNS Error: no upstream answered in time (22 No Reachable
 * Authority), or talking to them failed — refused, reset, a TLS or certificate failure, an
 * answer that was not one (23 Network Error); the resolver's own limit is 0 Other.
 */
export function failureEde(e: unknown): { code: number; text: string } {
  const kind = isPortcullisError(e) && typeof e.details.kind === 'string' ? e.details.kind : 'network';
  if (kind === 'timeout') return { code: EDE_NO_REACHABLE_AUTHORITY, text: 'no upstream answered in time' };
  if (kind === 'overloaded') return { code: EDE_OTHER, text: 'too many queries waiting for the upstreams' };
  if (kind === 'tls') return { code: EDE_NETWORK_ERROR, text: 'upstream TLS handshake or certificate refused' };
  return { code: EDE_NETWORK_ERROR, text: `upstream ${kind === 'network' || kind === 'closed' ? 'unreachable' : `answer ${kind}`}` };
}
const NO_OP = (): void => undefined;

/**
 * The DNS handler chain, in order. Each step may answer and stop; the order is the point:
 *
 *  1. parse      malformed -> FORMERR, EDNS version > 0 -> BADVERS, responses dropped
 *                (cheap, and every later step needs the question)
 *  2. acl        clients outside the allowed networks -> REFUSED (never an open resolver)
 *  3. rate limit per client token bucket -> REFUSED or drop; before any upstream work
 *  4. class      only IN is resolved; CHAOS and others -> REFUSED
 *  5. canary     use-application-dns.net -> NXDOMAIN (Firefox disables its own DoH)
 *  6. policy     a blocked name -> block answer (before the cache: a rule change is
 *                enforced on the very next query, cached answers included)
 *  7. doh names  the optional category of public resolver names -> block answer
 *  8. cache      fresh hit -> stored bytes, re-inspected when the policy changed since
 *  9. upstream   pool query -> inspection (CNAME cloaking, blocked addresses) -> cache
 * 10. stale      every upstream failed -> stale answer (RFC 8767), else SERVFAIL
 */
export function createDnsChain(options: DnsChainOptions): (queryBuf: Buffer, client: DnsClient, reply: DnsReply) => void {
  const { policy, cache, logger } = options;
  const onResult = options.onResult ?? NO_OP;
  const onBlocked = options.onBlocked ?? NO_OP;
  const reportBlocked = (client: DnsClient, query: Query, started: number, decision: Decision | null, rule: string | null): void => {
    onResult('blocked', client.transport, started, decision);
    onBlocked({ layer: 'dns', app: decision?.app ?? null, rule: decision?.rule ?? rule, name: query.qname, client: client.address });
  };
  const log = logger.child({ component: 'dns' });

  const send = (reply: DnsReply, message: Buffer, client: DnsClient, query: Query, queryBuf: Buffer): void => {
    const fits = client.transport !== 'udp' || message.length <= maxUdpResponse(query.edns);
    reply(fits ? message : truncateForUdp(message, query, queryBuf), client);
  };

  const inspect = (message: Buffer): Decision | null => inspectAnswer(message, policy);

  const inspectEntry = (entry: CacheEntry): Decision | null => {
    const version = policy.version;
    if (entry.inspection?.version !== version) entry.inspection = { version, blockedBy: inspect(entry.wire) };
    return entry.inspection.blockedBy;
  };

  const answerFromCache = (entry: { entry: CacheEntry; isFresh: boolean }, query: Query, queryBuf: Buffer, client: DnsClient, reply: DnsReply, started: number): boolean => {
    const blockedBy = inspectEntry(entry.entry);
    if (blockedBy !== null) {
      send(reply, blockedAnswer(queryBuf, query, blockedBy.app, options.block, policy.version), client, query, queryBuf);
      reportBlocked(client, query, started, blockedBy, null);
      return true;
    }
    const out = cache.serve(entry, query, queryBuf, Date.now(), client.transport === 'udp' ? 'udp' : 'tcp');
    if (out === null) return false;
    reply(out, client);
    onResult('cached', client.transport, started, null);
    return true;
  };

  const resolveUpstream = (query: Query, queryBuf: Buffer, client: DnsClient, reply: DnsReply, key: string, started: number): void => {
    const dnssecOk = query.edns?.dnssecOk ?? false;
    options.upstream
      .query({ nameWire: encodeName(query.qname), name: query.qname, qtype: query.qtype, qclass: query.qclass, dnssecOk, checkingDisabled: (query.flags & 0x0010) !== 0 })
      .then(
        (answer) => {
          const prepared = prepareUpstreamAnswer(answer.message, { stripEch: options.stripEch });
          const questionEnd = prepared === null ? null : walkResponse(prepared.message)?.questionEnd;
          if (prepared === null || questionEnd === undefined || questionEnd === null) {
            throw new PortcullisError('PCL_ERR_UPSTREAM_FAILED', 'malformed upstream answer', { details: { upstream: answer.upstream, kind: 'malformed' } });
          }
          const now = Date.now();
          const blockedBy = inspect(prepared.message);
          if (blockedBy !== null) {
            send(reply, blockedAnswer(queryBuf, query, blockedBy.app, options.block, policy.version), client, query, queryBuf);
            reportBlocked(client, query, started, blockedBy, null);
            return;
          }
          cache.store(key, prepared.message, now);
          const out = serveUncached(prepared.message, questionEnd, query, queryBuf, client.transport === 'udp' ? 'udp' : 'tcp');
          if (out === null) {
            throw new PortcullisError('PCL_ERR_UPSTREAM_FAILED', 'upstream question does not match', { details: { upstream: answer.upstream, kind: 'mismatch' } });
          }
          reply(out, client);
          onResult((prepared.message[3]! & 0xf) === RCODE.SERVFAIL ? 'servfail' : 'allowed', client.transport, started, null);
        },
      )
      .catch((e: unknown) => {
        const stale = cache.lookup(key, Date.now());
        if (stale !== undefined && answerFromCache(stale, query, queryBuf, client, reply, started)) return;
        log.debug({ err: e instanceof Error ? e.message : String(e), qtype: query.qtype }, 'upstream failed');
        send(reply, buildAnswer(queryBuf, query.id, query.flags, RCODE.SERVFAIL, query.questionEnd, query.edns, { ede: failureEde(e) }), client, query, queryBuf);
        onResult('servfail', client.transport, started, null);
      });
  };

  return (queryBuf, client, reply) => {
    const started = performance.now();
    // 1. parse
    const parsed = parseQuery(queryBuf);
    if (parsed.kind === 'drop') {
      reply(null, client);
      onResult('dropped', client.transport, started, null);
      return;
    }
    if (parsed.kind === 'error') {
      reply(buildAnswer(queryBuf, parsed.id, parsed.flags, parsed.rcode, parsed.question?.end ?? null, parsed.edns), client);
      onResult(parsed.rcode === RCODE.NOTIMP ? 'refused' : 'formerr', client.transport, started, null);
      return;
    }
    const query = parsed.query;
    const refuse = (): void => {
      send(reply, buildAnswer(queryBuf, query.id, query.flags, RCODE.REFUSED, query.questionEnd, query.edns), client, query, queryBuf);
      onResult('refused', client.transport, started, null);
    };
    // 2. acl
    if (!options.acl.allows(client.address)) return refuse();
    // 3. rate limit
    if (!options.rateLimiter.take(client.address, Date.now())) {
      if (options.rateLimitAction === 'drop') {
        reply(null, client);
        onResult('dropped', client.transport, started, null);
        return;
      }
      return refuse();
    }
    // 4. class
    if (query.qclass !== CLASS_IN) return refuse();
    // 5-7. canary, policy, doh names
    const judged = judgeQueryName(query.qname, options);
    if (judged.verdict === 'block') {
      const answer = judged === CANARY_BLOCK ? buildAnswer(queryBuf, query.id, query.flags, RCODE.NXDOMAIN, query.questionEnd, query.edns) : blockedAnswer(queryBuf, query, judged.app, options.block, policy.version);
      send(reply, answer, client, query, queryBuf);
      reportBlocked(client, query, started, isPolicyDecision(judged) ? judged : null, judged.rule);
      return;
    }
    // 8. cache
    const key = cacheKey(query, query.edns?.dnssecOk ?? false);
    const hit = cache.lookup(key, Date.now());
    if (hit?.isFresh === true && answerFromCache(hit, query, queryBuf, client, reply, started)) return;
    // 9-10. upstream, stale
    resolveUpstream(query, queryBuf, client, reply, key, started);
  };
}
