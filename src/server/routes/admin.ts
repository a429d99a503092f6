import type { FastifyInstance } from 'fastify';
import type { Row } from '../route.js';
import { z } from 'zod';
import { generateApiKey } from '../../crypto/apikey.js';
import { checkPasswordPolicy } from '../../crypto/password.js';
import { randomPassword } from '../../crypto/random.js';
import { API_KEY_SCOPES } from '../../db/queries/api-keys.js';
import { ROLES } from '../../db/queries/users.js';
import { auditWhere } from '../../db/queries/audit.js';
import { auditMacFor } from '../../core/audit/mac.js';
import { forbidden, httpError, notFound } from '../errors.js';
import { idParam, isoTime, parse, uuid } from '../validate.js';
import { defineRoute } from '../route.js';
import { loadSettings, SettingsPatchSchema } from '../settings.js';
import type { ServerDeps } from '../deps.js';

const PUBLIC_USER = `id, email, display_name AS "displayName", role, employee_id AS "employeeId",
  disabled_at AS "disabledAt", last_login_at AS "lastLoginAt", created_at AS "createdAt",
  (SELECT max(t.locked_until) FROM login_throttle t
    WHERE t.tenant_id = users.tenant_id AND t.user_id = users.id AND t.locked_until > now()) AS "lockedUntil"`;

const UserCreate = z.strictObject({
  email: z.email().max(254),
  role: z.enum(ROLES),
  displayName: z.string().trim().max(200).optional(),
  employeeId: uuid.nullable().optional(),
  password: z.string().min(1).max(200).optional(),
});
const UserPatch = z.strictObject({
  role: z.enum(ROLES).optional(),
  displayName: z.string().trim().max(200).optional(),
  employeeId: uuid.nullable().optional(),
  disabled: z.boolean().optional(),
});

export function adminRoutes(app: FastifyInstance, deps: ServerDeps) {
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/settings',
    roles: ['owner', 'admin', 'hr'],
    scope: 'read',
    async handler({ c, p }) {
      return { settings: await loadSettings(c, p.tenantId) };
    },
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/api/v1/settings',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p, req, audit, afterCommit }) {
      const b = parse(SettingsPatchSchema, req.body, 'body');
      const entries = Object.entries(b).filter(([, v]) => v !== undefined);
      if (!entries.length)
        throw httpError('VALIDATION_FAILED', 'no setting to change', {
          fields: [{ field: 'body', problem: 'empty' }],
        });
      const before = await loadSettings(c, p.tenantId);
      for (const [key, value] of entries) {
        await c.query<Row>(
          `INSERT INTO tenant_settings (tenant_id, key, value, updated_at, updated_by) VALUES ($1, $2, $3, now(), $4)
           ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by`,
          [p.tenantId, key, JSON.stringify(value), p.actor],
        );
      }
      await audit('settings.update', 'tenant_settings', p.tenantId, {
        changes: Object.fromEntries(
          entries.map(([k, v]) => [k, { from: before[k as keyof typeof before], to: v }]),
        ),
      });
      afterCommit(() => deps.hooks.onTenantSettingsChanged?.(p.tenantId, p.actor));
      return { settings: await loadSettings(c, p.tenantId) };
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/users',
    roles: ['owner', 'admin'],
    scope: 'admin',
    async handler({ c, p }) {
      const { rows } = await c.query<Row>(
        `SELECT ${PUBLIC_USER} FROM users WHERE tenant_id = $1 ORDER BY email`,
        [p.tenantId],
      );
      return { users: rows };
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/users',
    roles: ['owner', 'admin'],
    async handler({ c, p, req, reply, audit }) {
      const b = parse(UserCreate, req.body, 'body');
      if (b.role === 'owner' && p.role !== 'owner') throw forbidden('only an owner can create an owner');
      const generated = b.password === undefined ? randomPassword() : undefined;
      const plain = b.password ?? generated!;
      const problem = checkPasswordPolicy(plain);
      if (problem)
        throw httpError('VALIDATION_FAILED', `password ${problem}`, {
          fields: [{ field: 'body.password', problem }],
        });
      if (b.employeeId) {
        const e = await c.query<Row>('SELECT 1 FROM employees WHERE tenant_id = $1 AND id = $2', [
          p.tenantId,
          b.employeeId,
        ]);
        if (!e.rowCount) throw notFound('employee');
      }
      const hash = await deps.passwords.hash(plain);
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO users (tenant_id, email, display_name, role, password_hash, employee_id)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${PUBLIC_USER}`,
        [p.tenantId, b.email.toLowerCase(), b.displayName ?? '', b.role, hash, b.employeeId ?? null],
      );
      await audit('user.create', 'user', rows[0]!.id, { role: b.role, employeeId: b.employeeId ?? null });
      reply.code(201);
      return { ...rows[0], ...(generated ? { generatedPassword: generated } : {}) };
    },
  });

  defineRoute(app, deps, {
    method: 'PATCH',
    url: '/api/v1/users/:id',
    roles: ['owner', 'admin'],
    ledger: true,
    async handler({ c, p, req, audit }) {
      const id = idParam(req.params);
      const b = parse(UserPatch, req.body, 'body');
      const cur = await c.query<{ role: string }>(
        `SELECT role FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
        [p.tenantId, id],
      );
      if (!cur.rows[0]) throw notFound('user');
      if (p.role !== 'owner' && (cur.rows[0].role === 'owner' || b.role === 'owner')) {
        throw forbidden('only an owner can change an owner or make one');
      }
      if (id === p.userId && (b.disabled || (b.role && b.role !== p.role))) {
        throw forbidden('you cannot disable yourself or change your own role');
      }
      if (b.employeeId) {
        const e = await c.query<Row>('SELECT 1 FROM employees WHERE tenant_id = $1 AND id = $2', [
          p.tenantId,
          b.employeeId,
        ]);
        if (!e.rowCount) throw notFound('employee');
      }
      // A role change or a disable ends the user's sessions: they carried the old authority.
      const { rows } = await c.query<Row>(
        `UPDATE users SET role = coalesce($3, role), display_name = coalesce($4, display_name),
                employee_id = CASE WHEN $5::boolean THEN $6::uuid ELSE employee_id END,
                disabled_at = CASE WHEN $7::boolean IS NULL THEN disabled_at WHEN $7 THEN coalesce(disabled_at, now()) ELSE NULL END,
                session_epoch = session_epoch + CASE WHEN ($3::text IS NOT NULL AND $3 <> role) OR $7 IS TRUE THEN 1 ELSE 0 END
          WHERE tenant_id = $1 AND id = $2 RETURNING ${PUBLIC_USER}`,
        [
          p.tenantId,
          id,
          b.role ?? null,
          b.displayName ?? null,
          b.employeeId !== undefined,
          b.employeeId ?? null,
          b.disabled ?? null,
        ],
      );
      await audit('user.update', 'user', id, { ...b });
      return rows[0];
    },
  });

  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/users/:id/revoke-sessions',
    roles: ['owner', 'admin'],
    ledger: true,
    async handler({ c, p, req, reply, audit }) {
      const id = idParam(req.params);
      const cur = await c.query<{ role: string }>(
        'SELECT role FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
        [p.tenantId, id],
      );
      if (!cur.rows[0]) throw notFound('user');
      // Only owners act on owners: an admin must not be able to keep the owners logged out.
      if (cur.rows[0].role === 'owner' && p.role !== 'owner')
        throw forbidden("only an owner can end an owner's sessions");
      await c.query<Row>(
        'UPDATE users SET session_epoch = session_epoch + 1 WHERE tenant_id = $1 AND id = $2',
        [p.tenantId, id],
      );
      await audit('user.revoke_sessions', 'user', id);
      reply.code(204);
      return null;
    },
  });

  const KeyCreate = z.strictObject({
    name: z.string().trim().min(1).max(200),
    scopes: z.array(z.enum(API_KEY_SCOPES)).min(1).max(3),
    // An already-expired key is a mistake (a typo in the year), never useful: refused.
    expiresAt: isoTime.refine((t) => new Date(t).getTime() > Date.now(), 'must be in the future').optional(),
  });
  const KEY_COLUMNS = `id, name, prefix, scopes, created_by AS "createdBy", created_at AS "createdAt",
    expires_at AS "expiresAt", last_used_at AS "lastUsedAt", revoked_at AS "revokedAt"`;
  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/api-keys',
    roles: ['owner', 'admin'],
    async handler({ c, p }) {
      const { rows } = await c.query<Row>(
        `SELECT ${KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at`,
        [p.tenantId],
      );
      return { apiKeys: rows };
    },
  });
  defineRoute(app, deps, {
    method: 'POST',
    url: '/api/v1/api-keys',
    roles: ['owner', 'admin'],
    async handler({ c, p, req, reply, audit }) {
      const b = parse(KeyCreate, req.body, 'body');
      const k = generateApiKey(deps.secrets.apiKeyHmacKey);
      const scopes = [...new Set(b.scopes)];
      const { rows } = await c.query<{ id: string }>(
        `INSERT INTO api_keys (tenant_id, name, prefix, secret_hmac, scopes, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${KEY_COLUMNS}`,
        [p.tenantId, b.name, k.prefix, k.secretHmac, scopes, p.actor, b.expiresAt ?? null],
      );
      await audit('apikey.create', 'api_key', rows[0]!.id, { name: b.name, prefix: k.prefix, scopes });
      reply.code(201);
      // The only time the key is shown; only its HMAC is stored.
      return { ...rows[0], key: k.key };
    },
  });
  defineRoute(app, deps, {
    method: 'DELETE',
    url: '/api/v1/api-keys/:id',
    roles: ['owner', 'admin'],
    ledger: true,
    async handler({ c, p, req, reply, audit }) {
      const id = idParam(req.params);
      const { rows } = await c.query<{ prefix: string }>(
        `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2 RETURNING prefix`,
        [p.tenantId, id],
      );
      if (!rows[0]) throw notFound('API key');
      await audit('apikey.revoke', 'api_key', id, { prefix: rows[0].prefix });
      reply.code(204);
      return null;
    },
  });

  defineRoute(app, deps, {
    method: 'GET',
    url: '/api/v1/audit',
    roles: ['owner', 'admin'],
    async handler({ c, p, req }) {
      const q = parse(
        z.strictObject({
          action: z.string().max(64).optional(),
          actor: z.string().max(200).optional(),
          entity: z.string().max(200).optional(),
          since: isoTime.optional(),
          until: isoTime.optional(),
          beforeSeq: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        req.query,
        'query',
      );
      const w = auditWhere({
        tenantId: p.tenantId,
        action: q.action,
        actor: q.actor,
        entity: q.entity,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
        beforeSeq: q.beforeSeq,
      });
      const { rows } = await c.query<PageRow>(
        `SELECT seq, at, actor, action, entity_type AS "entityType", entity_id AS "entityId", details,
                encode(hash, 'hex') AS hash, (extract(epoch FROM at) * 1000000)::bigint AS at_us, ip_hash, ua_hash,
                details::text AS details_text, prev_hash, hash AS mac
           FROM audit_log WHERE ${w.sql}
          ORDER BY seq DESC LIMIT $${w.values.length + 1}`,
        [...w.values, q.limit],
      );
      // verified: every entry of the page has a valid MAC under the install's audit key, and entries with
      // consecutive seq on the page link to each other. The whole chain: `attendux audit verify`.
      const mac = auditMacFor(c);
      let verified = true;
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        const ok = mac
          .of({
            tenantId: p.tenantId,
            seq: r.seq,
            atUs: r.at_us,
            actor: r.actor,
            action: r.action,
            entityType: r.entityType,
            entityId: r.entityId,
            ipHash: r.ip_hash,
            uaHash: r.ua_hash,
            details: r.details_text,
            prevMac: r.prev_hash,
          })
          .equals(r.mac);
        const older = rows[i + 1];
        if (!ok || (older && older.seq === r.seq - 1 && !older.mac.equals(r.prev_hash))) verified = false;
      }
      const entries = rows.map((r) => ({
        seq: r.seq,
        at: r.at,
        actor: r.actor,
        action: r.action,
        entityType: r.entityType,
        entityId: r.entityId,
        details: r.details,
        hash: r.hash,
      }));
      return { entries, verified };
    },
  });
}

interface PageRow {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  entityType: string | null;
  entityId: string | null;
  details: Record<string, unknown>;
  hash: string;
  at_us: number;
  ip_hash: string | null;
  ua_hash: string | null;
  details_text: string;
  prev_hash: Buffer;
  mac: Buffer;
}
