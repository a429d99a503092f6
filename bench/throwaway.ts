import { connectClient, ddl } from '../src/db/pool.js';
import { runMigrations } from '../src/db/migrate.js';

/** A migrated database of its own for one bench run, on the PostgreSQL whose superuser URL is given. */
export interface ThrowawayDatabase {
  name: string;
  url: string;
  /** Drop it (unless KEEP=1 is set, to look at it or time it again from another script). */
  drop(): Promise<void>;
}

export async function throwawayDatabase(superuserUrl: string, label: string): Promise<ThrowawayDatabase> {
  const name = `attendux_bench_${label}_${process.pid}`;
  const u = new URL(superuserUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const su = await connectClient(superuserUrl);
  await su.query(
    `DO $$ BEGIN CREATE ROLE attendux_bench_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
  );
  await ddl(su, 'CREATE DATABASE %I', name);
  const drop = async () => {
    if (!process.env.KEEP) await ddl(su, 'DROP DATABASE IF EXISTS %I WITH (FORCE)', name);
    await su.end();
  };
  try {
    await runMigrations({ adminUrl: url, appRole: 'attendux_bench_app', direction: 'up' });
  } catch (err) {
    await drop();
    throw err;
  }
  return { name, url, drop };
}
