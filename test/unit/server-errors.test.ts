import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttenduxError, ERROR_CODES, type ErrorCode } from '../../src/errors.js';
import { installErrorHandler } from '../../src/server/errors.js';
import { nextKeyId } from '../../src/core/keys.js';

// A real Fastify app with the server's error handler: each route throws what a route handler might throw.
const app = Fastify({ logger: false });
installErrorHandler(app);
app.get('/code/:code', (req) => {
  const { code } = req.params as { code: ErrorCode };
  throw new AttenduxError(code, `a ${code} error`, { details: { why: 'test' } });
});
app.get('/pg/:code', (req) => {
  throw Object.assign(new Error('from pg'), { code: (req.params as { code: string }).code });
});
app.get('/lost', () => {
  throw new Error('Connection terminated unexpectedly');
});
app.get('/bug', () => {
  throw new TypeError('x is undefined');
});
beforeAll(() => app.ready());
afterAll(() => app.close());

describe('server error codes', () => {
  it('answers every code with the HTTP status of its catalog entry, and the code in the body', async () => {
    for (const [code, { httpStatus }] of Object.entries(ERROR_CODES)) {
      const res = await app.inject({ url: `/code/${code}` });
      expect(res.statusCode, code).toBe(httpStatus);
      expect(res.json().error.code, code).toBe(code);
      // Details explain a client's mistake; a server failure keeps its internals to itself.
      expect(res.json().error.details, code).toEqual(httpStatus < 500 ? { why: 'test' } : undefined);
    }
  });

  it('gives every code whose documentation names an HTTP status exactly that status', () => {
    const named = Object.entries(ERROR_CODES).filter(([, v]) => /\(HTTP \d{3}\)/.test(v.doc));
    expect(named.length).toBeGreaterThanOrEqual(15);
    for (const [code, v] of named)
      expect(v.httpStatus, code).toBe(Number(/\(HTTP (\d{3})\)/.exec(v.doc)![1]));
  });

  it('answers bad input with 4xx, never 5xx', () => {
    for (const code of ['USAGE', 'VALIDATION_FAILED', 'NOT_FOUND', 'ALREADY_EXISTS', 'CONFLICT'] as const)
      expect(ERROR_CODES[code].httpStatus, code).toBeLessThan(500);
    for (const { httpStatus } of Object.values(ERROR_CODES))
      expect([4, 5]).toContain(Math.floor(httpStatus / 100));
  });

  it('maps PostgreSQL errors caused by input to 4xx and a lost database to 503', async () => {
    const cases: [string, number, string][] = [
      ['23505', 409, 'ALREADY_EXISTS'],
      ['23503', 409, 'CONFLICT'],
      ['23514', 400, 'VALIDATION_FAILED'],
      ['22021', 400, 'VALIDATION_FAILED'],
      ['57P01', 503, 'DB_UNAVAILABLE'],
      ['ECONNREFUSED', 503, 'DB_UNAVAILABLE'],
    ];
    for (const [pgCode, status, code] of cases) {
      const res = await app.inject({ url: `/pg/${pgCode}` });
      expect([res.statusCode, res.json().error.code], pgCode).toEqual([status, code]);
    }
    const lost = await app.inject({ url: '/lost' });
    expect([lost.statusCode, lost.json().error.code]).toEqual([503, 'DB_UNAVAILABLE']);
  });

  it('answers a bug with a bare 500 INTERNAL that does not leak the message', async () => {
    const res = await app.inject({ url: '/bug' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
});

describe('data key ids', () => {
  it('numbers the next key after the highest k<n>', () => {
    expect(nextKeyId(['k1'])).toBe('k2');
    expect(nextKeyId(['k1', 'k9', 'k3', 'custom'])).toBe('k10');
    expect(nextKeyId([])).toBe('k1');
  });
});
