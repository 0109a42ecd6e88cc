import type { Decision } from '../policy/index.js';
import type { PolicyView } from './chain.js';
import { answerTargets, walkResponse } from './message.js';

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
