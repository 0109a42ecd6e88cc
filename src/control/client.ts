import { PortcullisError } from '../errors.js';

export interface ApiTarget {
  /** Base URL of the admin API, e.g. http://127.0.0.1:9090. */
  url: string;
  token: string | null;
}

const REQUEST_TIMEOUT_MS = 10_000;

/**
 * One admin API call for the CLI. A problem+json answer becomes PCL_ERR_API carrying the API's
 * own code and detail, so scripts see the same words as API clients.
 */
export async function callApi(target: ApiTarget, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (target.token !== null) headers.authorization = `Bearer ${target.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(new URL(path, target.url), { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (e: unknown) {
    const reason = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
    throw new PortcullisError('PCL_ERR_API', `cannot reach the admin API at ${target.url}: ${reason}`, { cause: e });
  }
  const text = await response.text();
  const parsed: unknown = text === '' ? null : JSON.parse(text);
  if (!response.ok) {
    const problem = (parsed ?? {}) as { code?: string; detail?: string };
    throw new PortcullisError('PCL_ERR_API', `${method} ${path}: ${response.status} ${problem.code ?? ''} ${problem.detail ?? text}`.replace(/\s+/g, ' ').trim(), {
      details: { status: response.status, code: problem.code ?? null },
    });
  }
  return parsed;
}
