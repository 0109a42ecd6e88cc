/**
 * Every failure portcullis reports carries a permanent `code`; messages may change, codes never.
 * Callers branch on `err.code`. Each code is documented in docs/errors.md (a unit test checks).
 */
export const ERROR_CODES = [
  'PCL_ERR_CONFIG_PARSE',
  'PCL_ERR_CONFIG_INVALID',
  'PCL_ERR_CATALOG_INVALID',
  'PCL_ERR_LIST_READ',
  'PCL_ERR_LIST_FETCH',
  'PCL_ERR_LIST_TOO_LARGE',
  'PCL_ERR_INVALID_NAME',
  'PCL_ERR_INVALID_CIDR',
  'PCL_ERR_INVALID_PORT',
  'PCL_ERR_UNKNOWN_APP',
  'PCL_ERR_UPSTREAM_FAILED',
  'PCL_ERR_DIAL_FORBIDDEN',
  'PCL_ERR_DIAL_FAILED',
  'PCL_ERR_NOT_FOUND',
  'PCL_ERR_BAD_REQUEST',
  'PCL_ERR_UNAUTHORIZED',
  'PCL_ERR_FORBIDDEN',
  'PCL_ERR_PRECONDITION_FAILED',
  'PCL_ERR_CONFLICT',
  'PCL_ERR_RATE_LIMITED',
  'PCL_ERR_STORE_CORRUPT',
  'PCL_ERR_STORE_UNAVAILABLE',
  'PCL_ERR_API',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class PortcullisError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PortcullisError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isPortcullisError(e: unknown): e is PortcullisError {
  return e instanceof PortcullisError;
}

/** Where in which file a configuration or list problem sits. */
export interface SourceLocation {
  file: string;
  field?: string;
  line?: number;
}

export function formatLocation(loc: SourceLocation): string {
  let out = loc.file;
  if (loc.line !== undefined) out += `:${loc.line}`;
  if (loc.field !== undefined && loc.field !== '') out += ` (${loc.field})`;
  return out;
}

export function configInvalid(problems: readonly (SourceLocation & { message: string })[]): PortcullisError {
  const lines = problems.map((p) => `${formatLocation(p)}: ${p.message}`);
  return new PortcullisError('PCL_ERR_CONFIG_INVALID', lines.join('\n'), { details: { problems } });
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
