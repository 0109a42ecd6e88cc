import type { AppId } from '../catalog/index.js';
import type { ProxyConfig } from '../config/index.js';
import type { AddressResolver, PolicyView } from '../dns/index.js';
import type { DialDeps } from './act/dial.js';
import { DialGuard } from './act/dial-guard.js';
import type { TlsBlockAction } from './act/refuse.js';
import type { ProxyReporter } from './events.js';

/** Every time and size limit a connection is held to (proxy.* config keys). */
export interface ProxyLimits {
  /** A whole ClientHello (or HTTP request head) must arrive within this. */
  clientHelloTimeoutMs: number;
  clientHelloMaxBytes: number;
  httpMaxHeadBytes: number;
  /** No byte either way for this long: the connection is closed. */
  idleTimeoutMs: number;
  /** Once one direction has ended (FIN), or after a refusal, the rest must be over within this much quiet. */
  halfClosedTimeoutMs: number;
}

/**
 * What every handler of every listener needs, built once per proxy: the policy, how to dial,
 * the limits, how to refuse TLS, and where to report. One object instead of option bags.
 */
export interface ProxyContext {
  policy: PolicyView;
  /** An app's display name for pages people read ("LINE", not "line"); null for rules of no app. */
  appName(app: AppId | null): string | null;
  dial: DialDeps;
  limits: ProxyLimits;
  blockAction: TlsBlockAction;
  report: ProxyReporter;
}

export function createProxyContext(config: ProxyConfig, policy: PolicyView, resolver: AddressResolver, report: ProxyReporter, appNames: ReadonlyMap<AppId, string> = new Map()): ProxyContext {
  return {
    policy,
    appName: (app) => (app === null ? null : (appNames.get(app) ?? app)),
    dial: {
      policy,
      resolver,
      hosts: config.hosts,
      guard: new DialGuard(config.allowedUpstreamNetworks),
      connectTimeoutMs: config.connectTimeoutMs,
    },
    limits: {
      clientHelloTimeoutMs: config.clientHelloTimeoutMs,
      clientHelloMaxBytes: config.clientHelloMaxBytes,
      httpMaxHeadBytes: config.httpMaxHeadBytes,
      idleTimeoutMs: config.idleTimeoutMs,
      halfClosedTimeoutMs: config.halfClosedTimeoutMs,
    },
    blockAction: config.blockAction,
    report,
  };
}
