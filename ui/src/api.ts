/** Calls to the admin API with the signed-in token; problem+json answers become ApiError. */

const TOKEN_KEY = 'portcullis.token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

interface Problem {
  code?: string;
  detail?: string;
  title?: string;
}

// The caller names the response shape the API documents (openapi.json); it is not checked here.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ body: T; etag: string | null }> {
  const token = storedToken();
  const response = await fetch(path, {
    method,
    headers: {
      accept: 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed: unknown = text === '' ? null : JSON.parse(text);
  if (!response.ok) {
    const problem = (parsed ?? {}) as Problem;
    throw new ApiError(response.status, problem.code ?? 'unknown', problem.detail ?? problem.title ?? response.statusText);
  }
  return { body: parsed as T, etag: response.headers.get('etag') };
}

/** An API error in words an admin can act on. */
export function explain(error: unknown): string {
  if (!(error instanceof ApiError)) return `The gateway could not be reached (${error instanceof Error ? error.message : String(error)}).`;
  switch (error.status) {
    case 401:
      return 'The token was not accepted. Sign in again.';
    case 403:
      return `Not allowed: ${error.message}.`;
    case 412:
      return 'This was changed elsewhere in the meantime. Reload the page and try again.';
    case 429:
      return 'Too many failed sign-ins from here. Wait a minute.';
    case 503:
      return `The policy store is unavailable, nothing was changed: ${error.message}.`;
    default:
      return error.message;
  }
}

export interface AppInfo {
  id: string;
  name: string;
  enabled: boolean;
  coverage: string;
  coverageNote: string | null;
  rules: { domains: number; cidrs: number; ports: number; protocols: number };
  blocksLastHour?: number;
}

export interface Rule {
  id: string;
  type: 'domain' | 'cidr' | 'port';
  value: string;
  action: 'block' | 'allow';
  app: string | null;
  comment: string | null;
}

export interface Who {
  name: string;
  scopes: string[];
}

/** GET /v1/catalog: the catalog in force, where it came from, and its updates. */
export interface CatalogStatus {
  version: number;
  origin: 'bundled' | 'signed';
  issued: string;
  expires: string | null;
  isExpired: boolean;
  bundledVersion: number;
  receivedVia: 'download' | 'fleet' | null;
  receivedAt: string | null;
  updates: {
    url: string;
    refreshSeconds: number;
    lastCheck: string | null;
    lastResult: string | null;
    lastError: string | null;
    nextCheck: string | null;
  } | null;
}
