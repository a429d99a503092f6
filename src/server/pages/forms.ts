import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import type { Role } from '../../core/accounts/roles.js';
import type { ServerDeps } from '../deps.js';
import { definePage, type PageSpec } from './page-route.js';
import { invalid } from '../../core/service.js';
import { html, type Html, type HtmlPart } from './html.js';

/**
 * Form fields arrive as strings; the API's schemas want numbers, booleans and absent fields. These turn a
 * posted form into the JSON the API would have received, so the page is validated by the same schema.
 */
export const opt = (s: string | undefined): string | undefined =>
  s === undefined || s.trim() === '' ? undefined : s.trim();

/** A number field: empty is absent; anything else goes to the schema as a number (NaN is refused there). */
export function num(s: string | undefined): number | undefined {
  const v = opt(s);
  return v === undefined ? undefined : Number(v);
}

/** A yes/no select. */
export const yesNo = (s: string | undefined): boolean | undefined =>
  s === 'yes' ? true : s === 'no' ? false : undefined;

/** Parse a form with an API schema; a failure names the fields in words (without echoing values). */
export function parseForm<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const parts = r.error.issues.map((i) => {
    const field = i.path.map(String).join('.') || 'the form';
    return `${field}: ${i.code === 'unrecognized_keys' ? 'unknown field' : i.message}`;
  });
  const first = r.error.issues[0];
  throw invalid(
    first?.path.map(String).join('.') || 'form',
    first?.message ?? 'invalid',
    `Check the form. ${parts.join('; ')}.`.slice(0, 500),
  );
}

/** A result said in words at the top of a page (after a post/redirect/get). */
export function notice(text: string | undefined): Html | '' {
  return text ? html`<p role="status" class="ok">${text}</p>` : '';
}

/** A local date (YYYY-MM-DD) of `d` in a time zone. */
export function localDate(d: Date, timeZone: string | undefined): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone: timeZone ?? 'UTC', dateStyle: 'short' }).format(d);
}

/** Minutes as hours and minutes, e.g. "7 h 05 min". */
export function hoursMinutes(minutes: number): string {
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** A time as the company reads it (UTC when no zone is known), e.g. "2026-12-01 09:02". */
export function localTime(d: unknown, timeZone?: string): string {
  if (!(d instanceof Date) && typeof d !== 'string') return '—';
  const t = new Date(d);
  if (Number.isNaN(t.getTime())) return '—';
  return new Intl.DateTimeFormat('sv-SE', {
    timeZone: timeZone ?? 'UTC',
    dateStyle: 'short',
    timeStyle: 'short',
  }).format(t);
}

/** Refuse a destructive post whose confirmation box was not ticked (the form requires it; a bare post must too). */
export function requireConfirm(form: Record<string, string>): void {
  if (form.confirm !== 'yes')
    throw invalid('confirm', 'not ticked', 'Nothing was changed: tick the box to confirm first.');
}

/** A field's value as form text: numbers and strings as they are, anything else (null, absent) empty. */
export function text(v: unknown): string {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' ? String(v) : '';
}

/**
 * A data table in a region that scrolls sideways on a phone (focusable, so a keyboard can scroll it too): a
 * caption, column headers, and rows whose first cell is the row's header.
 */
export function dataTable(
  label: string,
  caption: HtmlPart,
  columns: readonly string[],
  rows: readonly Html[],
): Html {
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label="${label}">
    <table>
      <caption>
        ${caption}
      </caption>
      <thead>
        <tr>
          ${columns.map((c) => html`<th scope="col">${c}</th>`)}
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
  </div>`;
}

/** Register form posts for these roles: `post(url, handler)`, each on the pages' request path (definePage). */
export function poster(app: FastifyInstance, deps: ServerDeps, roles: readonly Role[]) {
  return (url: string, handler: PageSpec['handler']) =>
    definePage(app, deps, { method: 'POST', url, roles, handler });
}
