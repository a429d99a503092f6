import type { FastifyInstance, FastifySchema } from 'fastify';
import swagger, { type SwaggerTransform } from '@fastify/swagger';
import { z } from 'zod';
import type { Role } from '../core/accounts/roles.js';
import type { ApiKeyScope } from '../db/queries/api-keys.js';
import { VERSION } from '../version.js';
import { SESSION_COOKIE } from './auth.js';

export const OPENAPI_URL = '/api/v1/openapi.json';

/** A 2xx status a route answers with when it succeeds. */
export type SuccessStatus = 200 | 201 | 204;

/** What the document says about one route; the zod schemas are the very objects the route validates with. */
export interface RouteDoc {
  roles?: readonly Role[];
  scope?: ApiKeyScope;
  body?: z.ZodType;
  query?: z.ZodType;
  params?: z.ZodType;
  /** Default [200]. */
  success?: readonly SuccessStatus[];
  /** Content types of the success body when not (only) JSON: a CSV or zip download, metrics. */
  produces?: readonly string[];
  summary?: string;
  /** No credentials needed (login, probes). */
  public?: boolean;
}

/**
 * JSON Schema (2020-12, what OpenAPI 3.1 uses) of what a client sends: the input side of transforms and
 * defaults. Refinements (a uuid, a calendar date) cannot be expressed and are enforced by the server only;
 * the `format` metadata on those schemas says what they check.
 */
export function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const js: Record<string, unknown> = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  // The document says which dialect its schemas are in (OpenAPI 3.1: JSON Schema 2020-12).
  delete js.$schema;
  return js;
}

const ERROR_SCHEMA: Record<string, unknown> = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'a code of the error catalog, e.g. VALIDATION_FAILED' },
        message: { type: 'string' },
        details: {
          type: 'object',
          description: 'for VALIDATION_FAILED: fields, each { field, problem }',
        },
      },
    },
  },
};

const SUCCESS_TEXT: Record<SuccessStatus, string> = { 200: 'OK', 201: 'Created', 204: 'No content' };

function responses(doc: RouteDoc): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of doc.success ?? [200]) {
    if (s === 204) out[s] = { description: SUCCESS_TEXT[s], type: 'null' };
    else if (doc.produces) {
      const content = Object.fromEntries(
        doc.produces.map((t) => [t, { schema: { type: t === 'application/json' ? 'object' : 'string' } }]),
      );
      out[s] = { description: SUCCESS_TEXT[s], content };
    }
    // Only the type: the success bodies have no schema of their own yet (the error body has).
    else out[s] = { description: SUCCESS_TEXT[s], type: 'object' };
  }
  out['4XX'] = { description: 'refused: see error.code', $ref: '#/components/schemas/Error' };
  return out;
}

function access(doc: RouteDoc): string {
  if (doc.public) return 'No credentials needed.';
  const roles = `Roles: ${(doc.roles ?? []).join(', ')}.`;
  return doc.scope
    ? `${roles} API keys with scope ${doc.scope}${doc.scope === 'admin' ? '' : ' or admin'}.`
    : `${roles} Not callable with an API key.`;
}

const cap = (w: string) => w.charAt(0).toUpperCase() + w.slice(1);

/**
 * A stable name for client generators, unique as method and path are: `PUT /api/v1/teams/:id/managers/:userId`
 * is `putTeamsByIdManagersByUserId`.
 */
export function operationId(method: string, url: string): string {
  const words = url
    .replace(/^\/api\/v1\//, '/')
    .split(/[/.-]+/)
    .filter(Boolean)
    .map((w) => (w.startsWith(':') ? `By${cap(w.slice(1))}` : cap(w)));
  return method.toLowerCase() + words.join('');
}

/** The route's operation in fastify-swagger's terms (body, querystring, params, response as JSON Schema). */
export function operationSchema(method: string, url: string, doc: RouteDoc): FastifySchema {
  const s: Record<string, unknown> = {
    operationId: operationId(method, url),
    tags: [url.split('/')[3] ?? url.split('/')[1] ?? 'server'],
    description: access(doc),
    security: doc.public ? [] : [{ session: [] }, ...(doc.scope ? [{ apiKey: [] }] : [])],
    response: responses(doc),
  };
  if (doc.summary) s.summary = doc.summary;
  if (!doc.public) s['x-roles'] = [...(doc.roles ?? [])];
  if (doc.scope) s['x-scope'] = doc.scope;
  if (doc.body) s.body = jsonSchemaOf(doc.body);
  if (doc.query) s.querystring = jsonSchemaOf(doc.query);
  if (doc.params) s.params = jsonSchemaOf(doc.params);
  return s;
}

/**
 * The route option that publishes a route: its schemas become JSON Schema only when the document is built,
 * and never reach Fastify's own validator (zod validates, with the 400 shape of src/server/validate.ts).
 */
export function documented(url: string, doc: RouteDoc): SwaggerTransform {
  return ({ route }) => ({ url, schema: operationSchema(String(route.method), url, doc) });
}

/** Routes without a schema of their own that are still part of the API (probes, metrics). */
const PUBLIC_DOCS: Record<string, RouteDoc> = {
  '/healthz': { public: true, summary: 'Liveness: the process answers' },
  '/readyz': {
    public: true,
    summary: 'Readiness: the database answers and the schema is current (else 503)',
    success: [200],
  },
  '/metrics': {
    public: true,
    summary: 'Prometheus metrics: loopback clients, or Authorization: Bearer <server.metricsToken>',
    produces: ['text/plain'],
  },
  '/.well-known/security.txt': {
    public: true,
    summary: 'RFC 9116 security contact',
    produces: ['text/plain'],
  },
  [OPENAPI_URL]: { public: true, summary: 'This document (OpenAPI 3.1)' },
};

/** A body with a default may be left out: fastify-swagger marks every request body required. */
function optionalBodies(openapiObject: Record<string, unknown>) {
  const paths = (openapiObject.paths ?? {}) as Record<string, Record<string, Record<string, unknown>>>;
  for (const item of Object.values(paths))
    for (const op of Object.values(item)) {
      const rb = op.requestBody as
        { required?: boolean; content?: Record<string, { schema?: { default?: unknown } }> } | undefined;
      if (rb?.content?.['application/json']?.schema?.default !== undefined) rb.required = false;
    }
  return openapiObject;
}

/**
 * Collect the routes registered after this (fastify-swagger's onRoute hook) and serve the document. Routes
 * that are not documented on purpose (HTML pages) are left out: documentation is opt-in per route.
 */
export async function registerOpenApi(
  app: FastifyInstance,
  rateLimit: { max: number; timeWindow: number },
): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'attendux',
        version: VERSION,
        description:
          'Multi-tenant attendance API. Errors answer { error: { code, message, details? } }; the request ' +
          'schemas below are the ones the server validates with (400 VALIDATION_FAILED names each field).',
      },
      components: {
        schemas: { Error: ERROR_SCHEMA },
        securitySchemes: {
          session: {
            type: 'apiKey',
            in: 'cookie',
            name: SESSION_COOKIE,
            description:
              'Set by POST /api/v1/auth/login. State-changing requests with the cookie must send an Origin ' +
              'header of the server (CSRF check).',
          },
          apiKey: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API key (atx_...) made by an owner or admin; its scopes limit the routes.',
          },
        },
      },
    },
    transform: ({ url, route }) => {
      const doc = PUBLIC_DOCS[url];
      return { url, schema: doc ? operationSchema(String(route.method), url, doc) : { hide: true } };
    },
    transformObject: (doc) =>
      'openapiObject' in doc
        ? optionalBodies(doc.openapiObject as Record<string, unknown>)
        : doc.swaggerObject,
  });
  app.get(OPENAPI_URL, { config: { rateLimit } }, () => app.swagger());
}
