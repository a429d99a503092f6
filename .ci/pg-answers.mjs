// Exit 0 when a trust-auth superuser PostgreSQL answers on 127.0.0.1:5432.
import pg from 'pg';

const client = new pg.Client({
  connectionString: 'postgres://postgres@127.0.0.1:5432/postgres',
  connectionTimeoutMillis: 3000,
});
try {
  await client.connect();
  await client.query('SELECT 1');
  await client.end();
  process.exit(0);
} catch {
  process.exit(1);
}
