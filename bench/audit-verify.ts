/**
 * `npx tsx bench/audit-verify.ts [--url postgres://…] [--entries 1000000] [--tenants 100] [--rounds 5]
 *    [--threads N] [--dist]`
 *
 * Seeds a throwaway database on the PostgreSQL at --url with that many audit entries (valid HMAC chains,
 * realistic field sizes), then times `audit verify`'s walk (binary COPY + HMAC per entry, src/core/audit/
 * verify.ts) in alternating rounds: one thread, then N threads (default: one per core but one, at least 2, up
 * to 4), so that both see the same load on a shared machine. Prints each round, the medians, the
 * CPU time per entry (this process, all threads), and the ratio to the goal (>= 500,000 entries/s).
 * `--dist` times the built code (`npm run build`), as the binary runs it, instead of the TypeScript under tsx.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import copyStreams from 'pg-copy-streams';
import { connectClient } from '../src/db/pool.js';
import { throwawayDatabase } from './throwaway.js';
import { availableParallelism } from 'node:os';
import { AuditMac } from '../src/core/audit/mac.js';
import type * as VerifyModule from '../src/core/audit/verify.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    entries: { type: 'string', default: '1000000' },
    tenants: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string' },
    dist: { type: 'boolean', default: false },
  },
});
const { verifyWith } = (await import(
  values.dist ? '../dist/core/audit/verify.js' : '../src/core/audit/verify.js'
)) as typeof VerifyModule;
const threads = Number(values.threads ?? Math.max(2, Math.min(4, availableParallelism() - 1)));

const N = Number(values.entries);
const T = Number(values.tenants);
const bench = await throwawayDatabase(values.url, 'audit');
const dbUrl = bench.url;

try {
  // BENCH_KEY (hex): a fixed key, to time a database kept with KEEP=1 from another script
  const key = process.env.BENCH_KEY ? Buffer.from(process.env.BENCH_KEY, 'hex') : randomBytes(32);
  const mac = new AuditMac(key);
  const c = await connectClient(dbUrl);
  try {
    const t0 = Date.now();
    await c.query("SET session_replication_role = 'replica'"); // seeding: no triggers
    const tenantIds = Array.from({ length: T }, () => crypto.randomUUID());
    const per = Math.ceil(N / T);
    const start = Date.now() * 1000 - N * 1000;
    const ipHash = randomBytes(32).toString('hex');
    function* rows(): Generator<string> {
      let batch = '';
      let n = 0;
      for (const tenantId of tenantIds) {
        let prev: Buffer = Buffer.alloc(0);
        for (let seq = 1; seq <= per && n < N; seq++, n++) {
          const atUs = start + n * 1000;
          const f = {
            tenantId,
            seq,
            atUs,
            actor: `user:${tenantId}`,
            action: seq % 10 === 0 ? 'auth.login' : 'attendance.check_in',
            entityType: 'attendance_event',
            entityId: String(n),
            ipHash,
            uaHash: ipHash,
            // as jsonb prints it (keys by length, then bytes): what the MAC covers
            details: `{"method": "gps", "siteId": null, "flagged": false, "geofence": "inside", "employeeId": "${tenantId}"}`,
            prevMac: prev,
          };
          const m = mac.of(f);
          const at = new Date(atUs / 1000).toISOString();
          batch += `${tenantId}\t${seq}\t${at}\t${f.actor}\t${f.action}\t${f.entityType}\t${f.entityId}\t${ipHash}\t${ipHash}\t${f.details}\t\\\\x${prev.toString('hex')}\t\\\\x${m.toString('hex')}\t2\n`;
          prev = m;
          if (batch.length > 1 << 20) {
            yield batch;
            batch = '';
          }
        }
      }
      if (batch) yield batch;
    }
    await pipeline(
      Readable.from(rows()),
      c.query(
        copyStreams.from(
          'COPY audit_log (tenant_id, seq, at, actor, action, entity_type, entity_id, ip_hash, ua_hash, details, prev_hash, hash, mac_version) FROM STDIN',
        ),
      ),
    );
    await c.query('VACUUM ANALYZE audit_log');
    const { rows: cnt } = await c.query<{ n: number; mb: string }>(
      "SELECT count(*)::int AS n, pg_size_pretty(pg_total_relation_size('audit_log')) AS mb FROM audit_log",
    );
    console.log(
      `seeded ${cnt[0]!.n} entries in ${T} chains (${cnt[0]!.mb}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
    const rates: Record<string, number[]> = { '1 thread': [], [`${threads} threads`]: [] };
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const n of [1, threads]) {
        const name = n === 1 ? '1 thread' : `${threads} threads`;
        const s = process.hrtime.bigint();
        const cpu = process.cpuUsage();
        // the real path of `audit verify`: one read-only repeatable-read snapshot
        const r = await verifyWith(c, { mac, publicKey: '', checkpoints: [], parallel: n });
        const secs = Number(process.hrtime.bigint() - s) / 1e9;
        const used = process.cpuUsage(cpu);
        if (!r.ok || r.checked !== cnt[0]!.n)
          throw new Error(`verify failed: ${JSON.stringify(r.breaks.slice(0, 3))}`);
        rates[name]!.push(r.checked / secs);
        console.log(
          `round ${round + 1} ${name.padEnd(10)} ${r.checked} entries in ${secs.toFixed(2)} s = ${Math.round(r.checked / secs).toLocaleString('en')} entries/s, ${((used.user + used.system) / r.checked).toFixed(2)} us CPU/entry here`,
        );
      }
    }
    for (const [name, v] of Object.entries(rates)) {
      const median = v.sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
      console.log(
        `median ${name.padEnd(10)} ${Math.round(median).toLocaleString('en')} entries/s   ratio to goal ${(median / 500_000).toFixed(2)}   (goal >= 500,000 entries/s)`,
      );
    }
  } finally {
    await c.end();
  }
} finally {
  await bench.drop();
}
