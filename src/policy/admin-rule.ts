import { isAppId, type AppId } from '../catalog/index.js';
import { PortcullisError } from '../errors.js';
import { formatCidr, parseCidr } from '../match/ip.js';
import { parseRuleName } from '../match/name.js';
import { isNamePattern, parseNamePattern } from '../match/name-pattern.js';
import { formatPortSpec, parsePortSpec } from '../match/ports.js';
import type { Action } from './rule.js';

export type AdminRuleType = 'domain' | 'cidr' | 'port';

/** A rule an admin added through the API or CLI; stored as written here (value normalised). */
export interface AdminRule {
  id: string;
  type: AdminRuleType;
  value: string;
  action: Action;
  app: AppId | null;
  comment: string | null;
}

export interface AdminRuleInput {
  type: AdminRuleType;
  value: string;
  action: Action;
  app?: string | null;
  comment?: string | null;
}

/**
 * Checks an admin rule and returns its normalised value: a domain as `kakao.com` (a leading
 * `*.` is accepted: a domain rule always covers subdomains) or a label pattern
 * (`katalk-*.kgslb.com`, match/name-pattern.ts), a CIDR in canonical form, a port
 * as `tcp/N[-M]`, `udp/N[-M]` or a bare `N[-M]` (TCP and UDP). Throws PCL_ERR_INVALID_NAME,
 * _CIDR, _PORT or _UNKNOWN_APP.
 */
export function normalizeAdminRule(input: AdminRuleInput): Omit<AdminRule, 'id'> {
  let app: AppId | null = null;
  if (input.app !== undefined && input.app !== null) {
    if (!isAppId(input.app)) {
      throw new PortcullisError('PCL_ERR_UNKNOWN_APP', `unknown app "${input.app}"`, { details: { app: input.app } });
    }
    app = input.app;
  }
  return { type: input.type, value: normalizeRuleValue(input.type, input.value), action: input.action, app, comment: input.comment ?? null };
}

export function normalizeRuleValue(type: AdminRuleType, value: string): string {
  switch (type) {
    case 'domain': {
      const name = value.trim().replace(/^\*\./, '');
      return isNamePattern(name) ? parseNamePattern(name).text : parseRuleName(name);
    }
    case 'cidr':
      return formatCidr(parseCidr(value));
    case 'port':
      return formatPortSpec(parsePortSpec(value));
  }
}
