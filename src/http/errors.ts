import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The error catalogue: every error a client can see has a stable `type` (a URI under
 * /problems/, documented in docs/errors.md), a status and a title. Handlers throw
 * `problem(...)`; one handler renders application/problem+json.
 */
export const ERRORS = {
  'bad-request': { status: 400, title: 'The request is malformed' },
  validation: { status: 400, title: 'The request does not match the schema' },
  'invalid-cursor': { status: 400, title: 'The cursor cannot be decoded' },
  unauthorized: { status: 401, title: 'Missing or invalid API key' },
  forbidden: { status: 403, title: 'The API key lacks the required scope' },
  'not-found': { status: 404, title: 'No such resource' },
  conflict: { status: 409, title: 'The resource already exists or changed' },
  'payload-too-large': { status: 413, title: 'The request body is too large' },
  'unsupported-media-type': { status: 415, title: 'Unsupported content type' },
  'invalid-readings': { status: 422, title: 'The readings cannot be accepted' },
  'unknown-device': { status: 422, title: 'The device does not exist and auto-creation is off' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  internal: { status: 500, title: 'Internal error' },
  unavailable: { status: 503, title: 'Temporarily unavailable, retry later' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class Problem extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    options?: { cause?: unknown; retryAfterS?: number },
  ) {
    super(detail, options);
    this.status = ERRORS[code].status;
    this.retryAfterS = options?.retryAfterS;
  }
  readonly retryAfterS: number | undefined;
}

export const problem = (
  code: ErrorCode,
  detail: string,
  extra?: Record<string, unknown>,
  options?: { cause?: unknown; retryAfterS?: number },
) => new Problem(code, detail, extra, options);

/** PostgreSQL SQLSTATEs and pool failures that mean something to a client. */
function fromDatabase(err: { code?: string; message?: string }): Problem | null {
  switch (err.code) {
    case '23505':
      return problem('conflict', 'A resource with that identity already exists.', {}, { cause: err });
    case '57014': // statement_timeout / cancel
    case '53300': // too many connections
    case '57P01': // admin shutdown
    case '57P03': // cannot connect now (starting up)
    case 'ECONNREFUSED':
      return problem('unavailable', 'The database is busy or unreachable.', {}, { cause: err, retryAfterS: 1 });
  }
  if (err.message && /timeout exceeded when trying to connect|Connection terminated/.test(err.message)) {
    return problem('unavailable', 'No database connection is free.', {}, { cause: err, retryAfterS: 1 });
  }
  return null;
}

export function toProblem(err: unknown): Problem {
  if (err instanceof Problem) return err;
  const e = err as FastifyError & { code?: string };
  if (e.validation) {
    const first = e.validation[0] as { params?: { additionalProperty?: string } } | undefined;
    const extra = first?.params?.additionalProperty;
    if (extra) return problem('validation', `${e.validationContext ?? 'request'} has an unknown property '${extra}'`);
    return problem('validation', `${e.validationContext ?? 'request'} ${e.message.replace(/^(body|querystring|params|headers)\/?\s*/, '')}`.trim());
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problem('payload-too-large', e.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problem('unsupported-media-type', e.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return problem('bad-request', 'The body is not valid JSON.');
  }
  if (e instanceof SyntaxError) return problem('bad-request', 'The body is not valid JSON.');
  const db = fromDatabase(e);
  if (db) return db;
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return problem(e.statusCode === 413 ? 'payload-too-large' : e.statusCode === 415 ? 'unsupported-media-type' : 'bad-request', e.message);
  }
  return problem('internal', 'An unexpected error occurred.', {}, { cause: err });
}

export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply) {
  const p = toProblem(err);
  if (p.status >= 500) req.log.error({ err: p.cause ?? err }, ERRORS[p.code].title);
  if (p.retryAfterS !== undefined) reply.header('retry-after', String(p.retryAfterS));
  return reply
    .code(p.status)
    .type('application/problem+json')
    .send({
      type: `/problems/${p.code}`,
      title: ERRORS[p.code].title,
      status: p.status,
      // never leak internals (SQL, stack) of a server-side failure
      detail: p.status >= 500 && p.code === 'internal' ? 'An unexpected error occurred.' : p.detail,
      // the path only: a query string may carry a secret (a report link's token)
      instance: req.url.split('?', 1)[0],
      request_id: req.id,
      ...p.extra,
    });
}

export function notFoundHandler(req: FastifyRequest, reply: FastifyReply) {
  return errorHandler(problem('not-found', `No route for ${req.method} ${req.url.split('?')[0]}.`), req, reply);
}
