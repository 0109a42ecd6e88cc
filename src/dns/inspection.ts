import type { Decision } from '../policy/index.js';
import type { NameSet, PolicyView } from './chain.js';
import { answerTargets, walkResponse } from './message.js';

export const FIREFOX_CANARY = 'use-application-dns.net';

/** Blocks of the name asked that no policy rule makes (dns.bypass); compared by identity. */
export const CANARY_BLOCK = Object.freeze({ verdict: 'block', app: null, rule: 'firefox-canary' } as const);
export const DOH_RESOLVER_BLOCK = Object.freeze({ verdict: 'block', app: null, rule: 'category:doh-bypass' } as const);

export type NameJudgement = Decision | typeof CANARY_BLOCK | typeof DOH_RESOLVER_BLOCK;

export interface NameJudgeOptions {
  policy: PolicyView;
  /** NXDOMAIN for use-application-dns.net: Firefox then keeps its own DoH off. */
  firefoxCanary: boolean;
  /** Public DoH/DoT resolver names, blocked when the category is on. */
  dohResolvers: NameSet | null;
}

/**
 * The name asked, as the DNS path judges it before any upstream: the Firefox canary, then the
 * policy, then the DoH-resolver category. The policy's decision when none of them blocks
 * (an allow rule shows in it); CANARY_BLOCK or DOH_RESOLVER_BLOCK for those two blocks.
 */
export function judgeQueryName(name: string, options: NameJudgeOptions): NameJudgement {
  if (options.firefoxCanary && name === FIREFOX_CANARY) return CANARY_BLOCK;
  const decision = options.policy.decide({ name, layer: 'dns' });
  if (decision.verdict === 'block') return decision;
  if (options.dohResolvers !== null && options.dohResolvers.match(name) !== null) return DOH_RESOLVER_BLOCK;
  return decision;
}

/** A judgement the policy made (as opposed to a dns.bypass block). */
export function isPolicyDecision(judged: NameJudgement): judged is Decision {
  return judged !== CANARY_BLOCK && judged !== DOH_RESOLVER_BLOCK;
}

/** One name or address of an upstream answer and what the policy says of it. */
export interface InspectionStep {
  kind: 'cname' | 'address';
  /** The CNAME target, or the address (A/AAAA). */
  target: string;
  decision: Decision;
}

/**
 * Inspection of an upstream answer, as the DNS path does it: every CNAME target, then every
 * address, decided in answer order; the first block decides (CNAME cloaking, an address in a
 * blocked app's range). Without `visit` it stops at that first block (the hot path); with it,
 * every step is decided and shown (`check --resolve`), and the result is the same.
 */
export function inspectAnswer(message: Buffer, policy: PolicyView, visit?: (step: InspectionStep) => void): Decision | null {
  const walked = walkResponse(message);
  if (walked === null) return null;
  const { cnames, addresses } = answerTargets(message, walked.records);
  let blockedBy: Decision | null = null;
  const judge = (kind: InspectionStep['kind'], target: string): boolean => {
    const decision = policy.decide(kind === 'cname' ? { name: target, layer: 'dns' } : { ip: target, layer: 'dns' });
    visit?.({ kind, target, decision });
    if (decision.verdict === 'block') blockedBy ??= decision;
    return blockedBy !== null && visit === undefined; // stop: the hot path needs only the first block
  };
  for (const name of cnames) if (judge('cname', name)) return blockedBy;
  for (const ip of addresses) if (judge('address', ip)) return blockedBy;
  return blockedBy;
}
