import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Validator } from '@seriousme/openapi-schema-validator';
import { login, ORIGIN, serverFixture, type Company, type ServerFixture } from '../helpers/server.js';
import { routeTable } from '../../src/server/route.js';
import { idsOf, ROUTE_CASES } from '../helpers/routes.js';

interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean;
  maximum?: number;
  maxLength?: number;
  enum?: unknown[];
  required?: string[];
}
interface Operation {
  security?: Record<string, string[]>[];
  'x-roles'?: string[];
  'x-scope'?: string;
  parameters?: { in: string; name: string; required?: boolean; schema: Schema }[];
  requestBody?: { required?: boolean; content: Record<string, { schema: Schema }> };
  responses: Record<string, unknown>;
}
interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { type: string; in?: string; scheme?: string }> };
}

let f: ServerFixture;
let app: FastifyInstance;
let a: Company;
let doc: Doc;
let owner: string;

/** The API routes of the matrix (pages, if any are defined with defineRoute, are not in the document). */
const apiRoutes = () => routeTable(app).filter((r) => r.url.startsWith('/api/'));

beforeAll(async () => {
  f = await serverFixture('openapi');
  ({ app, a } = f);
  const res = await app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
  expect(res.statusCode).toBe(200);
  doc = res.json<Doc>();
  owner = await login(app, a, 'owner');
});
afterAll(async () => {
  await f?.close();
});

/** Fastify's `/a/:id` is OpenAPI's `/a/{id}`. */
const oasPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function operations(): { path: string; method: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ path, method, op })),
  );
}

/** A request as the owner, to a documented path with a well-formed (random) id in every path parameter. */
function send(path: string, method: string, extra: { query?: string; payload?: object }) {
  const url = path.replace(/\{\w+\}/g, () => randomUUID()) + (extra.query ? `?${extra.query}` : '');
  return app.inject({
    method: method.toUpperCase() as 'GET',
    url,
    headers: { origin: ORIGIN, cookie: owner },
    ...(extra.payload ? { payload: extra.payload } : {}),
  });
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const v = new Validator();
    const r = await v.validate(structuredClone(doc) as never);
    expect(r.errors ?? []).toEqual([]);
    expect(r.valid).toBe(true);
    expect(doc.openapi).toBe('3.1.0');
  });

  it('documents every route of the role x route matrix, with its method, roles and API-key scope', () => {
    const table = apiRoutes();
    expect(table.length).toBeGreaterThan(30);
    const missing: string[] = [];
    for (const r of table) {
      const op = doc.paths[oasPath(r.url)]?.[r.method.toLowerCase()];
      if (!op) {
        missing.push(`${r.method} ${r.url}`);
        continue;
      }
      expect(op['x-roles'], `${r.method} ${r.url}`).toEqual([...r.roles]);
      expect(op['x-scope'], `${r.method} ${r.url}`).toBe(r.scope);
      const schemes = (op.security ?? []).flatMap((s) => Object.keys(s)).sort();
      expect(schemes, `${r.method} ${r.url}`).toEqual(r.scope ? ['apiKey', 'session'] : ['session']);
    }
    expect(missing).toEqual([]);
  });

  it('documents the unauthenticated routes, and no HTML page', () => {
    const open = [
      'post /api/v1/auth/login',
      'get /healthz',
      'get /readyz',
      'get /metrics',
      'get /.well-known/security.txt',
      'get /api/v1/openapi.json',
    ];
    for (const key of open) {
      const [method, path] = key.split(' ') as [string, string];
      expect(doc.paths[path]?.[method]?.security, key).toEqual([]);
    }
    // Everything documented is either in the matrix or one of these: nothing else slips in (e.g. pages).
    const known = new Set([
      ...apiRoutes().map((r) => `${r.method.toLowerCase()} ${oasPath(r.url)}`),
      ...open,
    ]);
    expect(operations().filter((o) => !known.has(`${o.method} ${o.path}`))).toEqual([]);
    expect(doc.paths['/']).toBeUndefined();
  });

  it('gives every operation a unique operationId', () => {
    const ids = operations().map((o) => (o.op as { operationId?: string }).operationId);
    expect(ids.every((x) => typeof x === 'string' && /^[a-z][A-Za-z]+$/.test(x))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(doc.paths['/api/v1/teams/{id}/managers/{userId}']!.put).toMatchObject({
      operationId: 'putTeamsByIdManagersByUserId',
    });
  });

  it('names the session cookie and the bearer API key as security schemes', () => {
    expect(doc.components.securitySchemes.session).toMatchObject({ type: 'apiKey', in: 'cookie' });
    expect(doc.components.securitySchemes.apiKey).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('publishes the zod constraints (a strict body, bounds, formats, defaults)', () => {
    const login = doc.paths['/api/v1/auth/login']!.post!.requestBody!.content['application/json']!.schema;
    expect(login).toMatchObject({
      type: 'object',
      additionalProperties: false,
      required: ['company', 'email', 'password'],
      properties: { company: { type: 'string', minLength: 1, maxLength: 63 } },
    });
    const params = doc.paths['/api/v1/employees/{id}']!.get!.parameters!;
    expect(params).toEqual([
      expect.objectContaining({
        in: 'path',
        name: 'id',
        required: true,
        schema: expect.objectContaining({ format: 'uuid' }),
      }),
    ]);
    const audit = doc.paths['/api/v1/audit']!.get!.parameters!.find((p) => p.name === 'limit')!;
    expect(audit.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 1000, default: 100 });
    // A body that may be left out is not marked required.
    expect(doc.paths['/api/v1/corrections/{id}/approve']!.post!.requestBody!.required).toBe(false);
    expect(doc.paths['/api/v1/employees']!.post!.responses).toHaveProperty('201');
    expect(doc.paths['/api/v1/sites/{id}']!.delete!.responses).toHaveProperty('204');
  });
});

describe('the documented schemas are the validator', () => {
  it('refuses with 400 a body with a field the document does not allow, on every route with a body', async () => {
    const withBody = operations().filter((o) => o.op.requestBody);
    expect(withBody.length).toBeGreaterThan(15);
    const wrong: string[] = [];
    for (const { path, method, op } of withBody) {
      expect(op.requestBody!.content['application/json']!.schema.additionalProperties).toBe(false);
      const res = await send(path, method, { payload: { notInTheDocument: 1 } });
      const body = res.json<{ error: { code: string; details?: { fields: { field: string }[] } } }>();
      const fields = body.error?.details?.fields?.map((x) => x.field) ?? [];
      if (res.statusCode !== 400 || body.error.code !== 'VALIDATION_FAILED' || !fields.includes('body'))
        wrong.push(`${method} ${path} -> ${res.statusCode} ${res.body.slice(0, 160)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('refuses with 400 a query parameter above its documented maximum or outside its enum', async () => {
    const cases: string[] = [];
    const wrong: string[] = [];
    for (const { path, method, op } of operations()) {
      for (const p of (op.parameters ?? []).filter((x) => x.in === 'query')) {
        const bad =
          p.schema.maximum !== undefined
            ? String(p.schema.maximum + 1)
            : p.schema.enum
              ? 'not-one-of-them'
              : undefined;
        if (bad === undefined) continue;
        cases.push(`${method} ${path} ${p.name}`);
        const res = await send(path, method, { query: `${p.name}=${bad}` });
        const fields = res.json<{ error: { details?: { fields: { field: string }[] } } }>().error?.details
          ?.fields;
        if (res.statusCode !== 400 || !fields?.some((x) => x.field === `query.${p.name}`))
          wrong.push(`${method} ${path}?${p.name}=${bad} -> ${res.statusCode} ${res.body.slice(0, 160)}`);
      }
    }
    expect(cases.length).toBeGreaterThan(8);
    expect(wrong).toEqual([]);
  });

  it('refuses a string longer than its documented maxLength, and accepts one at it', async () => {
    const schema = doc.paths['/api/v1/teams']!.post!.requestBody!.content['application/json']!.schema;
    const max = schema.properties!.name!.maxLength!;
    const over = await send('/api/v1/teams', 'post', { payload: { name: 'x'.repeat(max + 1) } });
    expect(over.statusCode).toBe(400);
    const at = await send('/api/v1/teams', 'post', { payload: { name: 'y'.repeat(max) } });
    expect(at.statusCode).toBe(201);
  });

  it('answers 404 for a path id that is not the documented uuid', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/api/v1/employees/not-a-uuid',
      headers: { cookie: owner },
    });
    expect(res.statusCode).toBe(404);
    const ok = await app.inject({
      method: 'GET',
      url: `/api/v1/employees/${a.employeeId.toUpperCase()}`,
      headers: { cookie: owner },
    });
    expect(ok.statusCode).toBe(200);
  });
});

describe('the documented responses', () => {
  it('are the 2xx statuses the routes really answer (every route of the matrix, as the owner)', async () => {
    const cookie = await login(app, a, 'owner');
    // Well-formed ids that name nothing answer 404, which is documented (4XX) like any refusal.
    const ids = idsOf(a, {
      userId: a.users.manager.id,
      deletableSiteId: randomUUID(),
      correctionId: randomUUID(),
      apiKeyId: randomUUID(),
    });
    // Logging out ends the session the others use: last.
    const cases = [...ROUTE_CASES].sort(
      (x, y) => Number(x.pattern.endsWith('/logout')) - Number(y.pattern.endsWith('/logout')),
    );
    const seen: string[] = [];
    const wrong: string[] = [];
    for (const [n, route] of cases.entries()) {
      const body = route.body?.(ids, n);
      const res = await app.inject({
        method: route.method,
        url: route.url(ids),
        headers: { origin: ORIGIN, cookie },
        ...(body !== undefined ? { payload: body as object } : {}),
      });
      const op = doc.paths[oasPath(route.pattern)]![route.method.toLowerCase()]!;
      const status = String(res.statusCode);
      const documented = status.startsWith('4') ? '4XX' in op.responses : status in op.responses;
      if (!documented) wrong.push(`${route.method} ${route.pattern} -> ${status}`);
      else if (status.startsWith('2')) seen.push(status);
    }
    expect(wrong).toEqual([]);
    // Most routes succeed with these requests, and all three success statuses occur.
    expect(seen.length).toBeGreaterThan(25);
    expect(new Set(seen)).toEqual(new Set(['200', '201', '204']));
  });
});
