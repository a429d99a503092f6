import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { listCompanyUsers } from '../../core/accounts/users.js';
import { readAuditPage } from '../../core/audit/page.js';
import { listCompanyKeys } from '../../core/keys/api-keys.js';
import {
  loadSettings,
  SETTINGS_SHAPE,
  SettingsPatchSchema,
  updateSettings,
  type SettingKey,
  type TenantSettings,
} from '../../core/settings/settings.js';
import type { Tx } from '../../core/service.js';
import { AuditQuery } from '../routes/admin.js';
import { isoDate } from '../validate.js';
import type { ServerDeps } from '../deps.js';
import { html, type Html } from './html.js';
import { definePage } from './page-route.js';
import { dataTable, localTime, notice, num, opt, parseForm, text, yesNo } from './forms.js';
import { ADMINS } from './admin-people.js';

/** What each setting means, in words (a key added later still shows, under its own name). */
const SETTING_WORDS: Partial<Record<string, string>> = {
  'geofence.mode': 'Check-ins outside every site are',
  'geofence.requirePosition': 'Refuse check-ins without a position',
  'face.threshold': 'Face match threshold (0 to 1)',
  'face.required': 'Require a face match on every check-in',
  'overtime.dailyMinutes': 'Regular minutes per day (beyond is overtime)',
  'overtime.multiplierPercent': 'Overtime pay in percent of the hourly rate',
  'retention.attendanceYears': 'Delete attendance older than (years; empty keeps it)',
  'retention.locationDays': 'Drop positions older than (days; empty keeps them)',
  'dsar.holdYears': 'Keep payroll records after an erasure for (years)',
};

/** One input per setting, from its schema: a select for choices and yes/no, a number field otherwise. */
function settingField(key: string, schema: z.ZodType, value: unknown): Html {
  const label = SETTING_WORDS[key] ?? key;
  const nullable = schema instanceof z.ZodNullable;
  const inner = nullable ? (schema as z.ZodNullable<z.ZodType>).unwrap() : schema;
  if (inner instanceof z.ZodEnum || inner instanceof z.ZodBoolean) {
    const options =
      inner instanceof z.ZodEnum
        ? (inner.options as string[]).map((o) => [o, o] as const)
        : ([
            ['yes', 'yes'],
            ['no', 'no'],
          ] as const);
    const current = typeof value === 'boolean' ? (value ? 'yes' : 'no') : String(value);
    return html`<label
      >${label}
      <select name="${key}">
        ${options.map(([v, t]) => html`<option value="${v}" ${v === current ? html`selected` : ''}>${t}</option>`)}
      </select></label
    >`;
  }
  const n = inner as z.ZodNumber;
  return html`<label
    >${label}
    <input
      name="${key}"
      type="number"
      step="${n.isInt ? '1' : 'any'}"
      ${n.minValue !== null && Number.isFinite(n.minValue) ? html`min="${n.minValue}"` : ''}
      ${n.maxValue !== null && Number.isFinite(n.maxValue) ? html`max="${n.maxValue}"` : ''}
      ${nullable ? '' : html`required`}
      value="${text(value)}"
  /></label>`;
}

/** The form's values as the API's JSON patch, keeping only what changed. */
function settingsPatch(form: Record<string, string>, current: TenantSettings): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(SETTINGS_SHAPE) as [SettingKey, z.ZodType][]) {
    if (!(key in form)) continue;
    const inner = schema instanceof z.ZodNullable ? (schema.unwrap() as z.ZodType) : schema;
    const raw = form[key];
    const v =
      inner instanceof z.ZodBoolean
        ? yesNo(raw)
        : inner instanceof z.ZodEnum
          ? raw
          : (num(raw) ?? (schema instanceof z.ZodNullable ? null : undefined));
    if (v !== undefined && v !== current[key]) patch[key] = v;
  }
  return patch;
}

function settingsPages(app: FastifyInstance, deps: ServerDeps): void {
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/settings',
    roles: ADMINS,
    handler: async ({ tx, query }) => {
      const s = await loadSettings(tx.q, tx.caller.tenantId);
      return {
        title: 'Company settings',
        body: html`${notice(query.done === 'saved' ? 'The settings were saved.' : query.done === 'same' ? 'Nothing changed.' : undefined)}
          <form method="post" action="/admin/settings" class="stack">
            ${(Object.entries(SETTINGS_SHAPE) as [SettingKey, z.ZodType][]).map(([k, schema]) => settingField(k, schema, s[k]))}
            <button type="submit">Save settings</button>
          </form>`,
      };
    },
  });
  definePage(app, deps, {
    method: 'POST',
    url: '/admin/settings',
    roles: ADMINS,
    handler: async ({ tx, form, afterCommit }) => {
      const patch = settingsPatch(form, await loadSettings(tx.q, tx.caller.tenantId));
      if (!Object.keys(patch).length) return { redirect: '/admin/settings?done=same' };
      await updateSettings(tx, parseForm(SettingsPatchSchema, patch));
      // As the API's PATCH /settings: the config backup hook runs after commit.
      afterCommit(() => deps.hooks.onTenantSettingsChanged?.(tx.caller.tenantId, tx.caller.actor));
      return { redirect: '/admin/settings?done=saved' };
    },
  });
}

const AuditForm = z.object({ from: isoDate.optional(), to: isoDate.optional() });

/** Actors as people read them: a user's email, an API key's name; anything else as recorded. */
async function actorNames(tx: Tx): Promise<Map<string, string>> {
  const users = await listCompanyUsers(tx);
  const keys = await listCompanyKeys(tx);
  return new Map([
    ...users.map((u) => [`user:${u.id}`, u.email] as const),
    ...keys.map((k) => [`apikey:${k.prefix}`, `API key ${k.name}`] as const),
  ]);
}

function auditFilterForm(q: Record<string, string>, actors: Map<string, string>): Html {
  return html`<form method="get" action="/admin/audit" class="inline">
    <label
      >Actor
      <select name="actor">
        <option value="">Anyone</option>
        ${[...actors].map(([id, name]) => html`<option value="${id}" ${id === q.actor ? html`selected` : ''}>${name}</option>`)}
      </select></label
    >
    <label
      >Action (e.g. apikey.create or apikey.*) <input name="action" maxlength="64" value="${q.action ?? ''}"
    /></label>
    <label>From <input type="date" name="from" value="${q.from ?? ''}" /></label>
    <label>To <input type="date" name="to" value="${q.to ?? ''}" /></label>
    <button type="submit">Filter the audit log</button>
  </form>`;
}

async function auditPage(tx: Tx, query: Record<string, string>) {
  const d = parseForm(AuditForm, { from: opt(query.from), to: opt(query.to) });
  const until = d.to ? new Date(Date.parse(`${d.to}T00:00:00Z`) + 86_400_000).toISOString() : undefined;
  const { limit, ...filter } = parseForm(AuditQuery, {
    actor: opt(query.actor),
    action: opt(query.action),
    since: d.from ? `${d.from}T00:00:00Z` : undefined,
    until,
    limit: '200',
  });
  const { entries, verified } = await readAuditPage(tx, filter, limit);
  const actors = await actorNames(tx);
  return {
    title: 'Audit log',
    body: html`${auditFilterForm(query, actors)}
      <p role="status">
        ${entries.length} entries (newest first, at most ${limit}; dates in UTC).
        ${entries.length ? (verified ? 'Every entry shown is intact (signature checked).' : html`<strong class="problem">Some entries failed the integrity check: run attendux audit verify.</strong>`) : ''}
      </p>
      ${dataTable(
        'Audit entries table',
        'Audit entries',
        ['When (UTC)', 'Actor', 'Action', 'Object', 'Details'],
        entries.map(
          (e) =>
            html`<tr>
              <td>${localTime(e.at)}</td>
              <td>${actors.get(e.actor) ?? e.actor}</td>
              <td>${e.action}</td>
              <td>${e.entityType}${e.entityId ? html` <span class="muted">${e.entityId}</span>` : ''}</td>
              <td><code class="details">${JSON.stringify(e.details ?? {}).slice(0, 300)}</code></td>
            </tr>`,
        ),
      )}`,
  };
}

/** Company settings and the audit log (owners and admins only, as the API's GET /audit). */
export function auditPages(app: FastifyInstance, deps: ServerDeps): void {
  settingsPages(app, deps);
  definePage(app, deps, {
    method: 'GET',
    url: '/admin/audit',
    roles: ADMINS,
    handler: ({ tx, query }) => auditPage(tx, query),
  });
}
