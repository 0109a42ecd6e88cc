import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { PortcullisError } from '../errors.js';
import type { TokenConfig } from '../config/index.js';

export type Scope = 'read' | 'write' | 'admin';

/** What each scope also grants: a write token reads, an admin token does everything. */
const GRANTS: Record<Scope, readonly Scope[]> = { read: ['read'], write: ['read', 'write'], admin: ['read', 'write', 'admin'] };

export interface Principal {
  /** The token's configured name, written to the audit log. */
  name: string;
  scopes: ReadonlySet<Scope>;
}

interface StoredToken {
  name: string;
  digest: Buffer;
  scopes: ReadonlySet<Scope>;
}

export interface TokenVerifier {
  readonly isConfigured: boolean;
  /** The principal for an Authorization header value, or null when it names no token. */
  verify(authorization: string | undefined): Principal | null;
}

/**
 * Loads `admin.tokens` (inline or from tokenFile) and keeps only
 * their SHA-256 digests. A presented token is hashed and compared with every stored digest with
 * timingSafeEqual: equal lengths always (never a throw on a length mismatch), and no early exit,
 * so timing says nothing about how close a guess was or which token matched.
 */
export async function loadTokens(tokens: readonly TokenConfig[]): Promise<TokenVerifier> {
  const stored: StoredToken[] = [];
  for (const token of tokens) {
    const secret = await readTokenSecret(token);
    stored.push({ name: token.name, digest: digest(secret), scopes: new Set(token.scopes.flatMap((s) => GRANTS[s])) });
  }
  return {
    isConfigured: stored.length > 0,
    verify(authorization) {
      const match = /^Bearer[ ]+(\S+)[ ]*$/i.exec(authorization ?? '');
      if (match === null) return null;
      const presented = digest(match[1]!);
      let found: StoredToken | null = null;
      for (const token of stored) if (timingSafeEqual(presented, token.digest) && found === null) found = token;
      return found === null ? null : { name: found.name, scopes: found.scopes };
    },
  };
}

/** A token's secret, inline or from its tokenFile; PCL_ERR_CONFIG_INVALID (`details.field`: token or tokenFile) when unreadable or shorter than 16 characters. */
export async function readTokenSecret(token: TokenConfig): Promise<string> {
  let secret = token.token;
  if (token.tokenFile !== null) {
    const path = token.tokenFile;
    secret = (
      await readFile(path, 'utf8').catch((e: unknown) => {
        throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `admin.tokens "${token.name}": cannot read tokenFile ${path}: ${e instanceof Error ? e.message : String(e)}`, { details: { field: 'tokenFile' } });
      })
    ).trim();
  }
  if (secret === null || secret.length < 16) {
    throw new PortcullisError('PCL_ERR_CONFIG_INVALID', `admin.tokens "${token.name}": the token must have at least 16 characters`, { details: { field: token.tokenFile === null ? 'token' : 'tokenFile' } });
  }
  return secret;
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/**
 * Failed authentications per client address within a minute; past the limit the client gets
 * 429 until the minute is over. Bounded: the least recently seen addresses are forgotten.
 */
export class AuthFailureLimiter {
  private readonly failures: LRUCache<string, { count: number; windowStart: number }>;

  constructor(
    private readonly perMinute: number,
    maxClients: number,
  ) {
    this.failures = new LRUCache({ max: maxClients });
  }

  /** Seconds to wait when the client is over the limit, else 0. */
  retryAfter(client: string, now = Date.now()): number {
    const entry = this.failures.get(client);
    if (entry === undefined || now - entry.windowStart >= 60_000) return 0;
    return entry.count >= this.perMinute ? Math.ceil((entry.windowStart + 60_000 - now) / 1000) : 0;
  }

  fail(client: string, now = Date.now()): void {
    const entry = this.failures.get(client);
    if (entry === undefined || now - entry.windowStart >= 60_000) this.failures.set(client, { count: 1, windowStart: now });
    else entry.count++;
  }
}
