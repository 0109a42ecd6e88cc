import { errorMessage } from '../errors.js';
import type { Decision, Verdict } from '../policy/index.js';
import { inspectAnswer, judgeQueryName, type NameJudgeOptions } from './inspection.js';
import type { UpstreamResolver } from './upstream-types.js';
import { encodeName } from './wire.js';

/** One step of a resolution: the name asked, a CNAME target, or an address, with its verdict. */
export interface ResolutionStep {
  kind: 'query' | 'cname' | 'address';
  target: string;
  /** Which answer the step came from; null for the name asked. */
  qtype: 'A' | 'AAAA' | null;
  verdict: Verdict;
  app: Decision['app'];
  rule: string | null;
}

/** What the DNS path would answer for one query type. */
export interface ResolutionAnswer {
  qtype: 'A' | 'AAAA';
  /** The upstream's rcode (NOERROR, NXDOMAIN...), or null when no upstream answered. */
  rcode: string | null;
  /** Why no upstream answered; the DNS path then answers SERVFAIL (or a stale answer). */
  error: string | null;
  verdict: Verdict;
  rule: string | null;
}

export interface Resolution {
  /** Blocked when the name, or any step of the A or AAAA answer, is. */
  verdict: Verdict;
  app: Decision['app'];
  rule: string | null;
  chain: ResolutionStep[];
  answers: ResolutionAnswer[];
}

/** The upstreams, and the name checks as dns.bypass configures the DNS path. */
export interface ExplainDeps extends NameJudgeOptions {
  upstream: UpstreamResolver;
}

const QTYPES = [
  ['A', 1],
  ['AAAA', 28],
] as const;
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/**
 * Follows a name through the live resolution the way the DNS path judges it: the name itself
 * (Firefox canary, policy, the DoH-resolver category), then an A and an AAAA query to the
 * upstreams, every CNAME target and address of each answer decided by the very inspection the
 * DNS path runs. Unlike the DNS path it asks upstream even for a blocked name, to show the chain.
 */
export async function explainResolution(name: string, deps: ExplainDeps): Promise<Resolution> {
  const asked = judgeQueryName(name, deps);
  const chain: ResolutionStep[] = [{ kind: 'query', target: name, qtype: null, ...verdictOf(asked) }];
  const answers: ResolutionAnswer[] = [];
  let firstBlock: Decision | null = null;
  // Both asked at once; judged in order, A first, as the chain lists them.
  const replies = await Promise.allSettled(QTYPES.map(([, code]) => deps.upstream.query({ nameWire: encodeName(name), name, qtype: code, qclass: 1, dnssecOk: false, checkingDisabled: false })));
  for (const [i, [qtype]] of QTYPES.entries()) {
    const reply = replies[i]!;
    if (reply.status === 'rejected') {
      answers.push({ qtype, rcode: null, error: errorMessage(reply.reason), ...answerVerdict(asked, null) });
      continue;
    }
    const { message } = reply.value;
    const blockedBy = inspectAnswer(message, deps.policy, (step) => {
      if (!chain.some((s) => s.kind === step.kind && s.target === step.target)) chain.push({ kind: step.kind, target: step.target, qtype, ...verdictOf(step.decision) });
    });
    firstBlock ??= blockedBy;
    answers.push({ qtype, rcode: RCODE_NAMES[message[3]! & 0xf] ?? String(message[3]! & 0xf), error: null, ...answerVerdict(asked, blockedBy) });
  }
  const deciding = asked.verdict === 'block' ? asked : firstBlock;
  return { verdict: deciding === null ? 'allow' : 'block', app: deciding?.app ?? null, rule: deciding?.rule ?? null, chain, answers };
}

function verdictOf(decision: Pick<Decision, 'verdict' | 'app' | 'rule'>): Pick<ResolutionStep, 'verdict' | 'app' | 'rule'> {
  return { verdict: decision.verdict, app: decision.app, rule: decision.rule };
}

function answerVerdict(asked: Pick<Decision, 'verdict' | 'rule'>, blockedBy: Decision | null): Pick<ResolutionAnswer, 'verdict' | 'rule'> {
  const deciding = asked.verdict === 'block' ? asked : blockedBy;
  return { verdict: deciding === null ? 'allow' : 'block', rule: deciding?.rule ?? null };
}
