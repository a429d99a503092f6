import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { backupFull } from '../../src/core/backup/full.js';
import { backupIncremental } from '../../src/core/backup/incremental.js';
import { openBackup } from '../../src/core/archive/reader.js';
import { type Manifest } from '../../src/core/archive/format.js';
import { connectClient, createPool, withTenant, type Pool } from '../../src/db/pool.js';
import { makeInstall, TABLES_FINGERPRINT_SQL, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { replayChanges } from '../helpers/replay.js';

let db: TestDatabase;
let admin: Pool;
let app: Pool;
let inst: TestInstall;
let tenant: string;
let employee: string;
const restored: TestDatabase[] = [];

const superUrl = (d: TestDatabase) => {
  const u = new URL(d.superuserUrl);
  u.pathname = `/${d.name}`;
  return u.toString();
};

async function insertEvent(pool: Pool, note: string): Promise<number> {
  const r = await withTenant(pool, tenant, (c) =>
    c.query<{ id: number }>(
      `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, device_id)
       VALUES ($1, $2, 'check_in', now(), 'unknown', 'manual', $3) RETURNING id`,
      [tenant, employee, note],
    ),
  );
  return r.rows[0]!.id;
}

async function fingerprint(url: string): Promise<Record<string, string>> {
  const c = await connectClient(url);
  try {
    const { rows } = await c.query<{ name: string; fp: string }>(TABLES_FINGERPRINT_SQL);
    return Object.fromEntries(rows.map((r) => [r.name, r.fp]));
  } finally {
    await c.end();
  }
}

/** A fresh migrated database loaded by hand: `age -d | tar -x`, then psql \copy of every table file. */
async function restoreByHand(
  fullFile: string,
): Promise<{ db: TestDatabase; dir: string; manifest: Manifest }> {
  const target = await createTestDatabase('byhand');
  restored.push(target);
  const dir = await mkdtemp(join(tmpdir(), 'attendux-byhand-'));
  execFileSync('sh', ['-c', `age -d -i "$1" "$2" | tar -x -C "$3"`, 'sh', inst.identityFile, fullFile, dir]);
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const args = [
    superUrl(target),
    '-q',
    '-v',
    'ON_ERROR_STOP=1',
    '-c',
    'SET session_replication_role = replica',
  ];
  for (const t of manifest.tables) {
    // Format 3 stores COPY binary and says so per table (README "Format").
    const opts = t.copyFormat === 'binary' ? ' (FORMAT binary)' : '';
    for (const e of t.entries) args.push('-c', `\\copy ${t.name} FROM PROGRAM 'zcat ${join(dir, e)}'${opts}`);
  }
  execFileSync('psql', args, { stdio: 'pipe' });
  return { db: target, dir, manifest };
}

beforeAll(async () => {
  db = await createTestDatabase('bchain');
  admin = createPool(db.adminUrl, 4);
  app = createPool(db.appUrl, 4);
  await seedReference(admin, { companies: 3, employees: 30, events: 20_000 });
  const { rows } = await admin.query<{ tenant_id: string; id: string }>(
    'SELECT tenant_id, id FROM employees ORDER BY tenant_id, id LIMIT 1',
  );
  tenant = rows[0]!.tenant_id;
  employee = rows[0]!.id;
  inst = await makeInstall(db);
});

afterAll(async () => {
  await app.end();
  await admin.end();
  for (const r of restored) await r.drop();
  await db.drop();
  await inst.cleanup();
});

describe('full and incremental backups', () => {
  it('restores by hand with the age CLI, tar and psql into a database equal to the source', async () => {
    const r = await backupFull({ configPath: inst.configPath });
    const before = await fingerprint(superUrl(db));
    const { db: target, dir, manifest } = await restoreByHand(join(inst.backupDir, r.sidecar.file));
    try {
      expect(manifest.tables.find((t) => t.name === 'attendance_events')!.rows).toBe(20_000);
      expectSameButNewestAudit(before, await fingerprint(superUrl(target)));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('puts a change of a transaction open across a backup into the next incremental exactly once', async () => {
    await backupFull({ configPath: inst.configPath });
    const open = await app.connect();
    let openId: number;
    try {
      await open.query('BEGIN');
      await open.query("SELECT set_config('attendux.tenant_id', $1, true)", [tenant]);
      const ins = await open.query<{ id: number }>(
        `INSERT INTO attendance_events (tenant_id, employee_id, kind, occurred_at, geofence, method, device_id)
         VALUES ($1, $2, 'check_out', now(), 'unknown', 'manual', 'held-open') RETURNING id`,
        [tenant, employee],
      );
      openId = ins.rows[0]!.id;
      // The backup runs while the transaction is open: its snapshot cannot see the row.
      const during = await backupIncremental({ configPath: inst.configPath });
      const seenDuring = await changeIds(during.sidecar.id, 'attendance_events');
      expect(seenDuring.rowIds).not.toContain(openId);
      await open.query('COMMIT');
    } finally {
      open.release();
    }
    const next = await backupIncremental({ configPath: inst.configPath });
    const after = await backupIncremental({ configPath: inst.configPath });
    expect(
      (await changeIds(next.sidecar.id, 'attendance_events')).rowIds.filter((id) => id === openId),
    ).toHaveLength(1);
    expect((await changeIds(after.sidecar.id, 'attendance_events')).rowIds).not.toContain(openId);
  });

  it('replays a full plus a chain of incrementals taken under concurrent writes to equal the source', async () => {
    const full = await backupFull({ configPath: inst.configPath });
    let stop = false;
    let written = 0;
    const writer = (async () => {
      while (!stop) {
        const id = await insertEvent(app, `w${written}`);
        if (written % 3 === 0)
          await withTenant(app, tenant, (c) =>
            c.query('UPDATE attendance_events SET flagged = true WHERE tenant_id = $1 AND id = $2', [
              tenant,
              id,
            ]),
          );
        if (written % 5 === 0)
          await withTenant(app, tenant, (c) =>
            c.query('DELETE FROM attendance_events WHERE tenant_id = $1 AND id = $2', [tenant, id]),
          );
        written++;
      }
    })();
    const incs: string[] = [];
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 150));
      incs.push((await backupIncremental({ configPath: inst.configPath })).sidecar.id);
    }
    stop = true;
    await writer;
    incs.push((await backupIncremental({ configPath: inst.configPath })).sidecar.id);
    expect(written).toBeGreaterThan(10);

    const { db: target, dir } = await restoreByHand(join(inst.backupDir, full.sidecar.file));
    const su = await connectClient(superUrl(target));
    const seen = new Set<number>();
    try {
      for (const id of incs) {
        const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
        try {
          expect(opened.manifest.parent).toBe(id === incs[0] ? full.sidecar.id : incs[incs.indexOf(id) - 1]);
          const ids = changeIdsFrom(opened.dir);
          for (const cid of ids) {
            expect(seen.has(cid)).toBe(false);
            seen.add(cid);
          }
          await replayChanges(su, join(opened.dir, 'data/changes.copy.gz'));
        } finally {
          await opened.cleanup();
        }
      }
    } finally {
      await su.end();
      await rm(dir, { recursive: true, force: true });
    }
    const source = await fingerprint(superUrl(db));
    const copy = await fingerprint(superUrl(target));
    expectSameButNewestAudit(source, copy);
  });
});

/**
 * Each backup's own audit entry is written after its snapshot (it lands in the next backup), so the source
 * has exactly one audit row more than a restore of its newest backup; everything else is equal.
 */
function expectSameButNewestAudit(source: Record<string, string>, copy: Record<string, string>): void {
  const { audit_log: a, ...sourceRest } = source;
  const { audit_log: b, ...copyRest } = copy;
  expect(copyRest).toEqual(sourceRest);
  expect(Number(a!.split(':')[0])).toBe(Number(b!.split(':')[0]) + 1);
}

function changeIdsFrom(dir: string): number[] {
  const text = execFileSync('zcat', [join(dir, 'data/changes.copy.gz')], { encoding: 'utf8' });
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.split('\t')[0]));
}

async function changeIds(id: string, table: string): Promise<{ ids: number[]; rowIds: number[] }> {
  const opened = await openBackup({ backupDir: inst.backupDir, id, identities: [inst.identity] });
  try {
    const text = execFileSync('zcat', [join(opened.dir, 'data/changes.copy.gz')], { encoding: 'utf8' });
    const lines = text
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t'));
    const mine = lines.filter((f) => f[3] === table);
    return {
      ids: lines.map((f) => Number(f[0])),
      rowIds: mine.map((f) => (JSON.parse(f[6]!) as { id: number }).id),
    };
  } finally {
    await opened.cleanup();
  }
}
