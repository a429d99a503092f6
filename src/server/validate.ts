import { z } from 'zod';
import { httpError } from './errors.js';
import { isUuid } from '../lib/uuid.js';

/**
 * Parse untrusted input with a zod schema. A failure is a 400 that names every offending field, without
 * echoing the values (they may be passwords).
 */
export function parse<T extends z.ZodType>(
  schema: T,
  input: unknown,
  where: 'body' | 'query' | 'params',
): z.infer<T> {
  const r = schema.safeParse(input ?? (where === 'body' ? undefined : {}));
  if (r.success) return r.data;
  const fields = r.error.issues.map((i) => ({
    field: [where, ...i.path.map(String)].join('.'),
    problem: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
  throw httpError(
    'VALIDATION_FAILED',
    `invalid ${where}: ${fields.map((f) => `${f.field} (${f.problem})`).join('; ')}`.slice(0, 500),
    { fields },
  );
}

/** A path id that is not a uuid cannot name anything: answer as for any other missing object. */
export function idParam(params: unknown, name = 'id'): string {
  const v = (params as Record<string, unknown> | undefined)?.[name];
  if (typeof v !== 'string' || !isUuid(v)) throw httpError('NOT_FOUND', 'not found');
  return v.toLowerCase();
}

// `format` is what the OpenAPI document shows of a refinement (JSON Schema cannot carry the check itself).
export const uuid = z.string().refine(isUuid, 'must be a uuid').meta({ format: 'uuid' });
/** Path ids: a uuid in any case, compared in lower case. */
const pathId = uuid.transform((s) => s.toLowerCase());
export const IdParams = z.strictObject({ id: pathId });
export const IdUserIdParams = z.strictObject({ id: pathId, userId: pathId });
export const name200 = z.string().trim().min(1).max(200);
export const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date YYYY-MM-DD')
  .refine(
    (s) =>
      !Number.isNaN(Date.parse(`${s}T00:00:00Z`)) && new Date(`${s}T00:00:00Z`).toISOString().startsWith(s),
    'not a calendar date',
  )
  .meta({ format: 'date' });
export const isoTime = z
  .string()
  .max(40)
  .refine(
    (s) => !Number.isNaN(Date.parse(s)) && /^\d{4}-\d{2}-\d{2}T/.test(s),
    'must be an ISO 8601 timestamp',
  )
  .meta({ format: 'date-time' })
  .transform((s) => new Date(s));
export const latitude = z.number().min(-90).max(90);
export const longitude = z.number().min(-180).max(180);
