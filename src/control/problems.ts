import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isPortcullisError, type ErrorCode, type PortcullisError } from '../errors.js';
import type { Logger } from '../observability/logger.js';

/** Admin API errors as application/problem+json (RFC 9457) whose `code` is one of docs/errors.md. */

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  PCL_ERR_BAD_REQUEST: 400,
  PCL_ERR_INVALID_NAME: 400,
  PCL_ERR_INVALID_CIDR: 400,
  PCL_ERR_INVALID_PORT: 400,
  PCL_ERR_UNKNOWN_APP: 400,
  PCL_ERR_UNAUTHORIZED: 401,
  PCL_ERR_FORBIDDEN: 403,
  PCL_ERR_NOT_FOUND: 404,
  PCL_ERR_CONFLICT: 409,
  PCL_ERR_PRECONDITION_FAILED: 412,
  PCL_ERR_RATE_LIMITED: 429,
  PCL_ERR_STORE_UNAVAILABLE: 503,
  PCL_ERR_STORE_CORRUPT: 503,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

interface FieldProblem {
  field: string;
  message: string;
}

/** `extra`: members a problem type adds (RFC 9457 3.2), such as the existing rule's id on a conflict. */
export function sendProblem(reply: FastifyReply, status: number, code: ErrorCode, detail: string, problems?: FieldProblem[], extra?: Record<string, unknown>): FastifyReply {
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ type: `urn:portcullis:error:${code}`, title: TITLES[status] ?? 'Error', status, detail, code, ...(problems === undefined ? {} : { problems }), ...extra });
}

/** Every error of the admin API, ours or fastify's (validation, body size, JSON), as a problem. */
export function problemErrorHandler(logger: Logger): (error: FastifyError | PortcullisError, request: FastifyRequest, reply: FastifyReply) => FastifyReply {
  return (error, _request, reply) => {
    if (isPortcullisError(error)) {
      const status = STATUS_BY_CODE[error.code] ?? 500;
      if (status === 401) void reply.header('www-authenticate', 'Bearer');
      if (status === 429) void reply.header('retry-after', String(typeof error.details.retryAfter === 'number' ? error.details.retryAfter : 60));
      if (status >= 500) logger.warn({ component: 'admin', code: error.code, err: error.message }, 'admin request failed');
      return sendProblem(reply, status, error.code, error.message, undefined, error.code === 'PCL_ERR_CONFLICT' ? { existing: error.details.existing } : undefined);
    }
    if (error.validation !== undefined) {
      const problems = error.validation.map((v) => ({
        field: `${error.validationContext ?? 'body'}${v.instancePath.replace(/\//g, '.')}${v.keyword === 'additionalProperties' ? `.${String((v.params as { additionalProperty?: string }).additionalProperty)}` : ''}`,
        message: v.keyword === 'additionalProperties' ? 'unknown field' : (v.message ?? 'invalid'),
      }));
      return sendProblem(reply, 400, 'PCL_ERR_BAD_REQUEST', problems.map((p) => `${p.field}: ${p.message}`).join('; '), problems);
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendProblem(reply, status, status === 404 ? 'PCL_ERR_NOT_FOUND' : 'PCL_ERR_BAD_REQUEST', error.message);
    logger.error({ component: 'admin', err: error.message }, 'admin request failed (a bug)');
    return sendProblem(reply, 500, 'PCL_ERR_BAD_REQUEST', 'internal error');
  };
}
