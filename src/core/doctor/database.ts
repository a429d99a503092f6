import { connectClient } from '../../db/pool.js';
import { migrationState } from '../../db/migrate.js';
import { verifyAudit } from '../audit/service.js';
import { fail, isLoopback, pass, skip, type Check, type DoctorEnv } from './types.js';

const needDb = (env: DoctorEnv) =>
  env.install ? null : skip('the database is not reachable (see db.reachable)');

export const dbReachable: Check = {
  id: 'db.reachable',
  run(env) {
    if (!env.loaded) return skip('no valid config');
    if (!env.install)
      return fail(
        `cannot open the database: ${env.installError?.message ?? 'unknown'}`,
        'check database.url / database.adminUrl and that PostgreSQL runs',
      );
    return pass('the database answers');
  },
};

export const MIN_PG = 14;
export function versionVerdict(num: number, min = MIN_PG) {
  const major = Math.floor(num / 10000);
  return major >= min
    ? pass(`PostgreSQL ${major}`)
    : fail(
        `PostgreSQL ${major} is not supported (${min} or newer)`,
        'upgrade PostgreSQL, then `attendux restore` a backup into it',
      );
}

export const dbVersion: Check = {
  id: 'db.version',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const { rows } = await env.install!.admin.query<{ v: string }>(
      "SELECT current_setting('server_version_num') AS v",
    );
    return versionVerdict(Number(rows[0]!.v), env.minPostgres);
  },
};

export const dbMigrations: Check = {
  id: 'db.migrations',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const st = await migrationState(env.install!.admin);
    if (st.pending.length)
      return fail(
        `${st.pending.length} pending migration(s): ${st.pending.join(', ')}`,
        'attendux migrate up',
      );
    return pass(`${st.applied.length} migrations applied, none pending`);
  },
};

const isLocal = (host: string) => !host || host.startsWith('/') || isLoopback(host);

export function tlsVerdict(host: string, ssl: boolean) {
  if (isLocal(host)) return pass(`the database is local (${host || 'socket'})`);
  return ssl
    ? pass(`TLS to ${host}`)
    : fail(
        `the connection to ${host} is not encrypted`,
        'add ?sslmode=verify-full to database.url and database.adminUrl',
      );
}

/** Does a connection made with this URL use TLS? Asked of the server, for the connection itself. */
async function connectionUsesTls(url: string): Promise<boolean> {
  const c = await connectClient(url, 'attendux-doctor');
  try {
    const { rows } = await c.query<{ ssl: boolean | null }>(
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return rows[0]?.ssl === true;
  } finally {
    await c.end();
  }
}

/** Both connections, the server's (database.url) and the admin one: each is checked as it is really made. */
export const dbTls: Check = {
  id: 'db.tls',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const urls = [
      ['database.url', env.install!.db.appUrl],
      ['database.adminUrl', env.install!.db.adminUrl],
    ] as const;
    const verdicts: { name: string; host: string; r: ReturnType<typeof tlsVerdict> }[] = [];
    for (const [name, url] of urls) {
      const host = new URL(url).hostname;
      verdicts.push({ name, host, r: tlsVerdict(host, !isLocal(host) && (await connectionUsesTls(url))) });
    }
    const bad = verdicts.filter((v) => v.r.status === 'fail');
    if (bad.length)
      return fail(
        `not encrypted: ${bad.map((v) => `${v.name} to ${v.host}`).join(', ')}`,
        bad[0]!.r.fix ?? null,
      );
    const hosts = [...new Set(verdicts.map((v) => v.host))];
    return verdicts.every((v) => isLocal(v.host))
      ? pass(`the database is local (${hosts.join(', ') || 'socket'})`)
      : pass(`TLS to ${hosts.filter((h) => !isLocal(h)).join(', ')}`);
  },
};

/** Looked up in the catalog as the server's own role, not assumed from the config. */
export const dbAppRole: Check = {
  id: 'db.app-role',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const c = await connectClient(env.install!.db.appUrl, 'attendux-doctor').catch((e: Error) => e);
    if (c instanceof Error)
      return fail(`the server's role cannot connect: ${c.message}`, 'check database.url');
    try {
      const { rows } = await c.query<{
        role: string;
        rolsuper: boolean;
        rolbypassrls: boolean;
        owns: number;
      }>(
        `SELECT current_user AS role, r.rolsuper, r.rolbypassrls,
                (SELECT count(*)::int FROM pg_class k WHERE k.relowner = r.oid AND k.relnamespace = 'public'::regnamespace AND k.relkind = 'r') AS owns
           FROM pg_roles r WHERE r.rolname = current_user`,
      );
      const r = rows[0]!;
      const bad = [
        r.rolsuper && 'is a superuser',
        r.rolbypassrls && 'has BYPASSRLS',
        r.owns > 0 && `owns ${r.owns} table(s)`,
      ].filter(Boolean);
      if (bad.length)
        return fail(
          `the server's role ${r.role} ${bad.join(', ')}: row-level security does not bind it`,
          'database.url must name the unprivileged app role that `attendux init` created',
        );
      return pass(`the server's role ${r.role}: no superuser, no BYPASSRLS, owns no table`);
    } finally {
      await c.end();
    }
  },
};

export const dbRls: Check = {
  id: 'db.rls',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const { rows } = await env.install!.admin.query<{ t: string }>(
      `SELECT c.relname AS t FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND NOT c.relrowsecurity
          AND c.relname <> 'change_log' ORDER BY 1`,
    );
    if (rows.length)
      return fail(
        `row-level security is OFF on ${rows.map((r) => r.t).join(', ')}`,
        'ALTER TABLE … ENABLE ROW LEVEL SECURITY (or `attendux migrate up` on a damaged schema)',
      );
    return pass('row-level security is on for every tenant-owned table');
  },
};

export const dbAuditImmutable: Check = {
  id: 'db.audit-immutable',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const app = env.install!.loaded.config.database.appRole;
    const appUser = new URL(env.install!.db.appUrl).username || app;
    const { rows } = await env.install!.admin.query<{ priv: string[]; trig: string | null }>(
      `SELECT ARRAY(SELECT p FROM unnest(ARRAY['UPDATE', 'DELETE', 'TRUNCATE', 'INSERT']) p
                     WHERE has_table_privilege($1, 'public.audit_log', p)) AS priv,
              (SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'public.audit_log'::regclass AND tgname = 'audit_log_immutable') AS trig`,
      [appUser],
    );
    const r = rows[0]!;
    if (r.priv.length)
      return fail(
        `the app role ${appUser} may ${r.priv.join(', ')} audit_log directly`,
        `REVOKE ${r.priv.join(', ')} ON audit_log FROM ${appUser}`,
      );
    if (r.trig !== 'O')
      return fail(
        'the append-only trigger of audit_log is disabled',
        'ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable, then `attendux audit verify`',
      );
    return pass(
      'audit_log refuses UPDATE and DELETE; the app role appends only through attendux_audit_append',
    );
  },
};

export const dbAuditVerify: Check = {
  id: 'db.audit-verify',
  async run(env) {
    const s = needDb(env);
    if (s) return s;
    const r = await verifyAudit(env.install!, { since: new Date(env.now.getTime() - 86_400_000) });
    if (!r.ok)
      return fail(
        `the audit log of the last day does not verify: ${r.breaks.length + r.moreBreaks} break(s), first ${r.breaks[0]?.kind} at ${r.breaks[0]?.tenantId}#${r.breaks[0]?.seq}`,
        'attendux audit verify (and investigate)',
      );
    return pass(`the last day's ${r.checked} audit entries verify`);
  },
};

export const databaseChecks = [
  dbReachable,
  dbVersion,
  dbMigrations,
  dbTls,
  dbAppRole,
  dbRls,
  dbAuditImmutable,
  dbAuditVerify,
];
