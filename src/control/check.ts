import { isIP } from 'node:net';
import { parseHostPort } from '../config/index.js';
import { normalizeQueryName, tryParseRuleName } from '../match/name.js';
import type { Decision, DecisionQuery } from '../policy/index.js';

export interface Target {
  name: string | null;
  ip: string | null;
  port: number | null;
}

/** `talk.kakao.com`, `1.2.3.4`, `2400:dcc0::1`, `name:443`, `1.2.3.4:5223`, `[2400:dcc0::1]:443`; a string says what is wrong. */
export function parseTarget(text: string): Target | string {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (isIP(bare) !== 0) return { name: null, ip: bare, port: null };
  const hostPort = parseHostPort(text, { defaultPort: 0 });
  if (typeof hostPort === 'string') return `"${text}" is not a host name, an IP address, or either with :port`;
  const port = hostPort.port === 0 ? null : hostPort.port;
  if (isIP(hostPort.host) !== 0) return { name: null, ip: hostPort.host, port };
  const normalized = normalizeQueryName(hostPort.host);
  if (normalized === null || tryParseRuleName(normalized) === null) return `"${hostPort.host}" is not a valid host name`;
  return { name: normalized, ip: null, port };
}

/** The decision `portcullis check` and `GET /v1/check` report: a name as DNS sees it, an address as the IP layer does. */
export function checkTarget(policy: { decide(query: DecisionQuery): Decision }, target: Target): Decision {
  return policy.decide({ name: target.name, ip: target.ip, port: target.port, layer: target.ip === null ? 'dns' : 'ip' });
}
