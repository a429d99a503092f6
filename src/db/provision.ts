import { connectClient, ddl, type Queryable } from './pool.js';
import { AttenduxError } from '../errors.js';
import { rewriteDbUrl } from '../lib/db-url.js';
import { scramSha256Verifier } from '../crypto/scram.js';

export interface ProvisionOptions {
  /** A superuser (or CREATEROLE + CREATEDB) connection to the cluster's maintenance database. */
  superuserUrl: string;
  database: string;
  ownerRole: string;
  ownerPassword: string;
  appRole: string;
  appPassword: string;
  /**
   * What to do when a role already exists. `refuse` (the default, for a shared cluster): the roles may be
   * another install's, whose password this would silently reset. `reset`: they are this install's (its own
   * embedded cluster, a resumed run that created them, or --force): set their passwords from the secrets.
   */
  existingRoles?: 'refuse' | 'reset';
  /** Called right after a role is created, so that a caller can record it as its own before anything else fails. */
  onRoleCreated?: (role: string) => Promise<void> | void;
}

export interface ProvisionResult {
  createdDatabase: boolean;
  createdRoles: string[];
  /** Roles that existed and got their attributes and password set again. */
  resetRoles: string[];
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function checkIdent(kind: string, name: string): void {
  if (!IDENT.test(name)) {
    throw new AttenduxError('USAGE', `${kind} "${name}" must be lower-case letters, digits and _ (max 63)`);
  }
}

async function roleExists(c: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  return rowCount === 1;
}

/**
 * Create the two roles and the database of an install, idempotently: the owner (schema owner, used for
 * migrations, backups and the CLI; may create databases for restores) and the app role the server runs as,
 * which cannot bypass row-level security. Existing roles are refused, or (existingRoles: 'reset') get the
 * passwords from the secrets file.
 */
export async function provisionDatabase(opts: ProvisionOptions): Promise<ProvisionResult> {
  checkIdent('database name', opts.database);
  checkIdent('role name', opts.ownerRole);
  checkIdent('role name', opts.appRole);
  if (opts.ownerRole === opts.appRole)
    throw new AttenduxError('USAGE', 'the owner and app roles must differ');
  const su = await connectClient(opts.superuserUrl, 'attendux-init');
  const createdRoles: string[] = [];
  const resetRoles: string[] = [];
  let createdDatabase = false;
  try {
    const roles = [
      [opts.ownerRole, opts.ownerPassword, 'LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOBYPASSRLS'],
      [opts.appRole, opts.appPassword, 'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT'],
    ] as const;
    if ((opts.existingRoles ?? 'refuse') === 'refuse') {
      const taken: string[] = [];
      for (const [role] of roles) if (await roleExists(su, role)) taken.push(role);
      if (taken.length) {
        throw new AttenduxError(
          'ALREADY_EXISTS',
          `role ${taken.join(' and ')} already exist${taken.length === 1 ? 's' : ''} on this PostgreSQL; init would reset ${taken.length === 1 ? 'its password' : 'their passwords'}`,
          {
            hint: 'choose another --database-name (roles are <db>_owner and <db>_app), or pass --force if they belong to this install and should take the passwords of its secrets file',
          },
        );
      }
    }
    for (const [role, password, attrs] of roles) {
      // The verifier, computed here: the password itself never appears in a statement the server could log.
      const verifier = scramSha256Verifier(password);
      if (await roleExists(su, role)) {
        await ddl(su, `ALTER ROLE %I WITH ${attrs} PASSWORD %L`, role, verifier);
        resetRoles.push(role);
      } else {
        await ddl(su, `CREATE ROLE %I WITH ${attrs} PASSWORD %L`, role, verifier);
        createdRoles.push(role);
        await opts.onRoleCreated?.(role);
      }
    }
    // In-place restores swap databases, which needs the server's connections ended: membership in the app
    // role is what lets the owner terminate them (pg_terminate_backend), without pg_signal_backend's reach
    // over every other role of a shared cluster.
    await ddl(su, 'GRANT %I TO %I', opts.appRole, opts.ownerRole);
    const { rowCount } = await su.query('SELECT 1 FROM pg_database WHERE datname = $1', [opts.database]);
    if (rowCount === 0) {
      // A provisioning role that is not a superuser (CREATEROLE + CREATEDB) may only create a database for
      // an owner it is a member of; for a superuser the grant is a harmless no-op.
      // Refused when already a member or a superuser; if it mattered, CREATE DATABASE below says so.
      await ddl(su, 'GRANT %I TO current_user', opts.ownerRole).catch(() => undefined);
      await ddl(
        su,
        "CREATE DATABASE %I OWNER %I ENCODING 'UTF8' TEMPLATE template0",
        opts.database,
        opts.ownerRole,
      );
      createdDatabase = true;
    }
    await ddl(su, 'REVOKE ALL ON DATABASE %I FROM PUBLIC', opts.database);
    // The server needs no temporary tables: without TEMPORARY the app role cannot create objects anywhere.
    await ddl(su, 'GRANT CONNECT ON DATABASE %I TO %I', opts.database, opts.appRole);
    await ddl(su, 'REVOKE TEMPORARY ON DATABASE %I FROM %I', opts.database, opts.appRole);
  } finally {
    await su.end().catch(() => undefined); // closing a broken connection: the error that broke it is thrown
  }
  // Inside the new database: the owner owns the public schema, nobody else may create objects in it.
  const db = await connectClient(
    rewriteDbUrl(opts.superuserUrl, { database: opts.database }),
    'attendux-init',
  );
  try {
    await ddl(db, 'ALTER SCHEMA public OWNER TO %I', opts.ownerRole);
    await db.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
  } finally {
    await db.end().catch(() => undefined); // as above
  }
  return { createdDatabase, createdRoles, resetRoles };
}
