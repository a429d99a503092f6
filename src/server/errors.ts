import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AttenduxError, type ErrorCode } from '../errors.js';
import { failure as httpError, forbidden, notFound } from '../core/service.js';

/** HTTP status of each error code the server answers with. Anything unlisted is a 500 (a bug). */
export const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  VALIDATION_FAILED: 400,
  USAGE: 400,
  UNAUTHENTICATED: 401,
  SESSION_EXPIRED: 401,
  LOGIN_FAILED: 401,
  FORBIDDEN: 403,
  CSRF_REJECTED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA: 415,
  OUTSIDE_GEOFENCE: 422,
  POSITION_REQUIRED: 422,
  FACE_MISMATCH: 422,
  FACE_NOT_ENROLLED: 422,
  RATE_LIMITED: 429,
  MAINTENANCE: 503,
  DB_UNAVAILABLE: 503,
};

// One definition of the error constructors, shared with the core services that throw them.
export { httpError, forbidden, notFound };

interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

export function sendError(reply: FastifyReply, status: number, body: ErrorBody): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

/** PostgreSQL errors caused by input (constraint violations) are the client's fault, not the server's. */
function fromPg(err: { code?: string; constraint?: string }): AttenduxError | undefined {
  switch (err.code) {
    case '23505':
      return httpError('ALREADY_EXISTS', 'an object with that name or number already exists');
    case '23503':
      return httpError(
        'CONFLICT',
        'the object is referenced by, or references, something that does not allow it',
      );
    case '23514':
      return httpError('VALIDATION_FAILED', 'a value is out of range or malformed');
    // The database is down, restarting or full: the client may retry; this is not a bug.
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case '57P01':
    case '57P02':
    case '57P03':
    case '53300':
    case '08000':
    case '08001':
    case '08003':
    case '08006':
      return httpError('DB_UNAVAILABLE', 'the database is unavailable; retry shortly');
    default:
      // Class 22 is "data exception": a value PostgreSQL cannot take (a NUL byte: 22021, a number out of
      // range: 22003, a malformed date: 22007, ...). Input that reached the database unfiltered, not a bug.
      if (typeof err.code === 'string' && err.code.startsWith('22'))
        return httpError('VALIDATION_FAILED', 'a value is out of range or malformed');
      return undefined;
  }
}

/** Map Fastify's own errors (body parsing, limits) to our codes. */
function fromFastify(err: FastifyError): AttenduxError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return httpError('PAYLOAD_TOO_LARGE', 'the request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return httpError('UNSUPPORTED_MEDIA', 'send the request body as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return httpError('VALIDATION_FAILED', 'the JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return httpError('VALIDATION_FAILED', 'the body is not valid JSON');
    default:
      if (err.statusCode === 429) return httpError('RATE_LIMITED', 'too many requests; retry later');
      if (err instanceof SyntaxError || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500))
        return httpError('VALIDATION_FAILED', 'the request is malformed');
      return undefined;
  }
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const known = err instanceof AttenduxError ? err : (fromPg(err) ?? fromFastify(err));
    if (known) {
      const status = HTTP_STATUS[known.code] ?? 500;
      if (status >= 500 && known.code !== 'MAINTENANCE') req.log.error({ err }, 'request failed');
      const body: ErrorBody = { error: { code: known.code, message: known.message } };
      if (known.details && status < 500) body.error.details = known.details;
      return sendError(reply, status, body);
    }
    req.log.error({ err }, 'unexpected error');
    return sendError(reply, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
  });
  app.setNotFoundHandler((_req, reply) =>
    sendError(reply, 404, { error: { code: 'NOT_FOUND', message: 'no such route' } }),
  );
}
