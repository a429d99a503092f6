import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AttenduxError, ERROR_CODES } from '../errors.js';
import { isConnectionLost } from '../lib/pg-errors.js';
import { failure as httpError, forbidden, notFound } from '../core/service.js';

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
  // The database is down, restarting or full: the client may retry; this is not a bug.
  if (isConnectionLost(err)) return httpError('DB_UNAVAILABLE', 'the database is unavailable; retry shortly');
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

/** The catalog error an error stands for (ours, PostgreSQL's input errors, Fastify's), or undefined: a fault. */
export function knownError(err: unknown): AttenduxError | undefined {
  if (err instanceof AttenduxError) return err;
  if (err === null || typeof err !== 'object') return undefined;
  return fromPg(err) ?? fromFastify(err as FastifyError);
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const known = knownError(err);
    if (known) {
      const status = ERROR_CODES[known.code].httpStatus;
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
