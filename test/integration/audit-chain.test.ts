import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { connectClient, withTenant } from '../../src/db/pool.js';
import { appendAudit, SYSTEM_TENANT } from '../../src/db/queries/audit.js';
import { AuditMac } from '../../src/core/audit/mac.js';
import {
  checkpointFile,
  checkpointValid,
  readCheckpointFile,
  startCheckpointer,
} from '../../src/core/audit/checkpoints.js';
import { publicKeyOf } from '../../src/crypto/signing.js';
import { migrate } from '../../src/core/migrate.js';
import {
  checkpointNow,
  exportAudit,
  purgeAudit,
  rechainAudit,
  verifyAudit,
  verifyExportFile,
} from '../../src/core/audit/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { createTestInstall, type TestInstall } from '../helpers/server.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { registerAuditKey } from '../../src/core/audit/mac.js';

let db: TestDatabase;
let ti: TestInstall;
let su: pg.Client;
const tenants: Record<string, string> = {};

async function newTenant(slug: string, entries = 8): Promise<string> {
  const { rows } = await ti.install.admin.query<{ id: string }>(
    `INSERT INTO tenants (slug, name, time_zone, currency) VALUES ($1, $1, 'UTC', 'EUR') RETURNING id`,
    [slug],
  );
  const id = rows[0]!.id;
  for (let i = 0; i < entries; i++)
    await appendAudit(ti.install.admin, {
      tenantId: id,
      actor: 'user:x',
      action: 'thing.change',
      entityType: 'thing',
      entityId: String(i),
      // a unit separator inside a field: ambiguous in the old encoding, not in the length-prefixed one
      details: { i, note: `a\x1fb` },
    });
  tenants[slug] = id;
  return id;
}

/** As the database superuser: run statements with the append-only trigger off. */
async function tamper(...sql: [string, unknown[]?][]) {
  await su.query('BEGIN');
  await su.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
  for (const [s, v] of sql) await su.query(s, v);
  await su.query('ALTER TABLE audit_log ENABLE TRIGGER USER');
  await su.query('COMMIT');
}

/**
 * Recompute every MAC of a chain from its first entry, as an attacker with the given key would (the real
 * audit key: root with the secrets file; another key: anyone without it).
 */
async function recomputeChain(tenantId: string, key: Buffer) {
  const mac = new AuditMac(key);
  const { rows } = await su.query<{
    seq: string;
    at_us: string;
    actor: string;
    action: string;
    entity_type: string | null;
    entity_id: string | null;
    ip_hash: string | null;
    ua_hash: string | null;
    details: string;
  }>(
    `SELECT seq::text, (extract(epoch FROM at) * 1000000)::bigint::text AS at_us, actor, action, entity_type, entity_id,
            ip_hash, ua_hash, details::text AS details FROM audit_log WHERE tenant_id = $1 ORDER BY audit_log.seq`,
    [tenantId],
  );
  let prev: Buffer = Buffer.alloc(0);
  const updates: [string, unknown[]][] = [];
  for (const r of rows) {
    const m = mac.of({
      tenantId,
      seq: Number(r.seq),
      atUs: Number(r.at_us),
      actor: r.actor,
      action: r.action,
      entityType: r.entity_type,
      entityId: r.entity_id,
      ipHash: r.ip_hash,
      uaHash: r.ua_hash,
      details: r.details,
      prevMac: prev,
    });
    updates.push([
      'UPDATE audit_log SET prev_hash = $3, hash = $4 WHERE tenant_id = $1 AND seq = $2',
      [tenantId, r.seq, prev, m],
    ]);
    prev = m;
  }
  await tamper(...updates);
}

const auditKey = () => Buffer.from(ti.install.secrets.auditKey, 'base64');
const breaksOf = (r: Awaited<ReturnType<typeof verifyAudit>>, slug: string) =>
  r.breaks.filter((b) => b.tenantId === tenants[slug]).map((b) => ({ seq: b.seq, kind: b.kind }));

beforeAll(async () => {
  db = await createTestDatabase('auditchain');
  ti = await createTestInstall(db);
  su = await connectClient(db.superuserUrl.replace(/\/[^/]*$/, `/${db.name}`));
});

afterAll(async () => {
  await su.end();
  await ti.cleanup();
  await db.drop();
});

describe('the keyed chain', () => {
  it('verifies intact chains, and the MAC is not the old unkeyed digest', async () => {
    await newTenant('clean');
    const r = await verifyAudit(ti.install);
    expect(r.breaks).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.checked).toBeGreaterThanOrEqual(8);
    const { rows } = await su.query<{ same: boolean }>(
      `SELECT bool_or(hash = attendux_audit_digest(prev_hash, tenant_id, seq, at, actor, action, entity_type, entity_id,
                                                   ip_hash, ua_hash, details)) AS same
         FROM audit_log WHERE tenant_id = $1`,
      [tenants.clean],
    );
    expect(rows[0]!.same).toBe(false);
  });

  it('detects every tampering kind done as the superuser, all in one run, each at its entry', async () => {
    const edit = await newTenant('edit');
    const mid = await newTenant('midrow');
    const newest = await newTenant('newest');
    const ins = await newTenant('inserted');
    const rewriteNoKey = await newTenant('rewrite-nokey');
    const rewriteKey = await newTenant('rewrite-key');
    const reorder = await newTenant('reorder');
    // Anchors first: the checkpoints in the data dir (and a copy kept elsewhere, as backups keep them).
    await checkpointNow(ti.install, 'manual');
    const offServer = join(ti.dir, 'offserver-checkpoints.jsonl');
    await copyFile(checkpointFile(ti.dataDir), offServer);

    await tamper(
      // an edit with the triggers disabled (MAC left as it was)
      ['UPDATE audit_log SET details = \'{"i": 99}\' WHERE tenant_id = $1 AND seq = 4', [edit]],
      // a deleted middle row
      ['DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 5', [mid]],
      // a deleted newest row (only a checkpoint can tell)
      ['DELETE FROM audit_log WHERE tenant_id = $1 AND seq = 8', [newest]],
      // an inserted row at the end, with made-up links
      [
        `INSERT INTO audit_log (tenant_id, seq, at, actor, action, details, prev_hash, hash, mac_version)
         VALUES ($1, 9, now(), 'user:evil', 'thing.change', '{}', decode(repeat('ab', 32), 'hex'), decode(repeat('cd', 32), 'hex'), 2)`,
        [ins],
      ],
      // two entries swapped (their seq numbers exchanged)
      ['UPDATE audit_log SET seq = -1 WHERE tenant_id = $1 AND seq = 3', [reorder]],
      ['UPDATE audit_log SET seq = 3 WHERE tenant_id = $1 AND seq = 6', [reorder]],
      ['UPDATE audit_log SET seq = 6 WHERE tenant_id = $1 AND seq = -1', [reorder]],
      ["UPDATE audit_log SET actor = 'user:someone-else' WHERE tenant_id = $1 AND seq = 3", [rewriteNoKey]],
      ["UPDATE audit_log SET actor = 'user:someone-else' WHERE tenant_id = $1 AND seq = 3", [rewriteKey]],
    );
    // full rewrites with recomputed hashes: without the key, and with it (root who read the secrets file)
    await recomputeChain(rewriteNoKey, Buffer.alloc(32, 7));
    await recomputeChain(rewriteKey, auditKey());

    const r = await verifyAudit(ti.install);
    expect(r.ok).toBe(false);
    expect(breaksOf(r, 'clean')).toEqual([]);
    expect(breaksOf(r, 'edit')).toEqual([{ seq: 4, kind: 'edited' }]);
    expect(breaksOf(r, 'midrow')).toEqual([{ seq: 6, kind: 'missing' }]);
    expect(breaksOf(r, 'newest')).toEqual([{ seq: 8, kind: 'missing' }]);
    expect(breaksOf(r, 'inserted')).toEqual([{ seq: 9, kind: 'inserted' }]);
    // every entry MAC'd under the wrong key, and the checkpoint's entry differs
    expect(breaksOf(r, 'rewrite-nokey').filter((b) => b.kind === 'edited')).toHaveLength(8);
    // with the key only the anchor outside the database catches it: entries 3..8 changed MAC
    expect(breaksOf(r, 'rewrite-key')).toEqual([{ seq: 8, kind: 'checkpoint' }]);
    expect(breaksOf(r, 'reorder').map((b) => b.seq)).toEqual(expect.arrayContaining([3, 4, 6, 7]));
    expect(r.breaks.find((b) => b.tenantId === newest)!.detail).toMatch(/newest entries were deleted/);
    // The parallel walk (worker threads in one exported snapshot: what a large install gets) finds
    // exactly the same, in the same order.
    const par = await verifyAudit(ti.install, { parallel: 3 });
    expect(par.breaks).toEqual(r.breaks);
    expect(par.heads).toEqual(r.heads);
    expect([par.checked, par.chains, par.checkpoints]).toEqual([r.checked, r.chains, r.checkpoints]);

    // The attacker also deletes the data dir's checkpoint file: the off-server copy still catches it.
    await rm(checkpointFile(ti.dataDir));
    const alone = await verifyAudit(ti.install, { tenant: 'rewrite-key' });
    expect(alone.ok).toBe(true); // nothing left to compare with on the server: the documented limit
    const withCopy = await verifyAudit(ti.install, { tenant: 'rewrite-key', checkpointFiles: [offServer] });
    expect(withCopy.breaks.map((b) => b.kind)).toEqual(['checkpoint']);
  });

  it('refuses a forged checkpoint', async () => {
    const file = join(ti.dir, 'forged.jsonl');
    const cp = (await checkpointNow(ti.install)).checkpoints[0]!;
    await writeFile(file, JSON.stringify({ ...cp, seq: cp.seq + 1000 }) + '\n');
    const r = await verifyAudit(ti.install, { checkpointFiles: [file] });
    expect(r.breaks.some((b) => b.kind === 'checkpoint' && /bad signature/.test(b.detail))).toBe(true);
  });
});

describe('purge', () => {
  it('deletes only entries older than the retention, writes a signed record, and the chain verifies', async () => {
    const t = await newTenant('purge', 10);
    // Age entries 1..6 by 400 days and re-MAC (the test has the key): what a year of real use leaves.
    await tamper([
      "UPDATE audit_log SET at = at - interval '400 days' WHERE tenant_id = $1 AND seq <= 6",
      [t],
    ]);
    await recomputeChain(t, auditKey());
    await checkpointNow(ti.install);
    const before = await verifyAudit(ti.install, { tenant: 'purge' });
    expect(before.breaks).toEqual([]);

    const dry = await purgeAudit(ti.install, { olderThanDays: 365, dryRun: true, actor: 'cli:t' });
    expect(dry.tenants.find((x) => x.tenantId === t)?.deleted).toBe(6);
    expect((await su.query('SELECT 1 FROM audit_log WHERE tenant_id = $1', [t])).rowCount).toBe(10);

    const r = await purgeAudit(ti.install, { olderThanDays: 365, actor: 'cli:t' });
    expect(r.tenants.find((x) => x.tenantId === t)).toEqual({ tenantId: t, deleted: 6, throughSeq: 6 });
    const { rows } = await su.query<{ seq: string; action: string }>(
      'SELECT seq::text, action FROM audit_log WHERE tenant_id = $1 ORDER BY audit_log.seq',
      [t],
    );
    expect(rows.map((x) => x.seq)).toEqual(['7', '8', '9', '10', '11']);
    expect(rows.at(-1)!.action).toBe('audit.purge');
    const after = await verifyAudit(ti.install, { tenant: 'purge' });
    expect(after.breaks).toEqual([]);
    // The purge itself is audited install-wide too.
    const sys = await su.query(
      "SELECT 1 FROM audit_log WHERE tenant_id = $1 AND action = 'audit.purge_run'",
      [SYSTEM_TENANT],
    );
    expect(sys.rowCount).toBeGreaterThan(0);
  });

  it('is the only deletion path, owner only, never younger than a day', async () => {
    await expect(
      ti.install.admin.query("SELECT * FROM attendux_audit_purge($1, interval '1 hour')", [tenants.clean]),
    ).rejects.toThrow(/at least one day/);
    const app = createPool(db.appUrl, 1);
    try {
      await expect(
        app.query("SELECT * FROM attendux_audit_purge($1, interval '400 days')", [tenants.clean]),
      ).rejects.toThrow(/permission denied/);
    } finally {
      await app.end();
    }
  });

  it('a purge without its record is detected as missing entries', async () => {
    const t = await newTenant('purge-unrecorded', 5);
    await tamper(['DELETE FROM audit_log WHERE tenant_id = $1 AND seq <= 2', [t]]);
    const r = await verifyAudit(ti.install, { tenant: 'purge-unrecorded' });
    expect(r.breaks.map((b) => [b.seq, b.kind])).toEqual([[3, 'missing']]);
  });
});

describe('re-chain of entries under the old unkeyed hash', () => {
  async function legacyChain(slug: string) {
    const t = await newTenant(slug, 4);
    // What 0001-0004 left: the unkeyed SHA-256 digest, mac_version 1.
    const { rows } = await su.query<{ seq: string }>(
      'SELECT seq::text FROM audit_log WHERE tenant_id = $1 ORDER BY seq',
      [t],
    );
    for (const r of rows) {
      await tamper([
        `UPDATE audit_log a SET mac_version = 1,
                prev_hash = coalesce((SELECT p.hash FROM audit_log p WHERE p.tenant_id = a.tenant_id AND p.seq = a.seq - 1), '\\x'),
                hash = attendux_audit_digest(coalesce((SELECT p.hash FROM audit_log p WHERE p.tenant_id = a.tenant_id AND p.seq = a.seq - 1), '\\x'),
                                             tenant_id, seq, at, actor, action, entity_type, entity_id, ip_hash, ua_hash, details)
          WHERE tenant_id = $1 AND seq = $2`,
        [t, r.seq],
      ]);
    }
    return t;
  }

  it('re-keys an intact old chain, which then verifies', async () => {
    await legacyChain('legacy');
    const r0 = await verifyAudit(ti.install, { tenant: 'legacy' });
    expect(r0.breaks.map((b) => b.kind)).toEqual(['legacy']);
    const r = await rechainAudit(ti.install.admin);
    expect(r.rechained).toBe(4);
    expect((await verifyAudit(ti.install, { tenant: 'legacy' })).ok).toBe(true);
    expect((await rechainAudit(ti.install.admin)).legacy).toBe(0);
  });

  it('`migrate up` re-keys what it finds, with nothing else to migrate', async () => {
    await legacyChain('legacy-migrate');
    const r = await migrate({ configPath: ti.configPath }, { direction: 'up' });
    expect(r.ran).toEqual([]);
    expect(r.rechain).toEqual({ rechained: 4 });
    expect((await verifyAudit(ti.install, { tenant: 'legacy-migrate' })).breaks).toEqual([]);
  });

  it('refuses to launder an old chain that is already broken', async () => {
    const t = await legacyChain('legacy-broken');
    await tamper(["UPDATE audit_log SET actor = 'x' WHERE tenant_id = $1 AND seq = 2", [t]]);
    await expect(rechainAudit(ti.install.admin)).rejects.toThrow(/already broken/);
    const r = await rechainAudit(ti.install.admin, { force: true });
    expect(r.legacyBreaks).toEqual([{ tenantId: t, seq: 2 }]);
  });
});

describe('export', () => {
  it('exports a range an auditor can verify offline, and detects a changed file', async () => {
    const t = await newTenant('export', 6);
    await checkpointNow(ti.install);
    for (const fmt of ['jsonl', 'csv'] as const) {
      const out = join(ti.dir, `export.${fmt}`);
      const m = await exportAudit(ti.install, { tenant: 'export', out, format: fmt, actor: 'cli:t' });
      expect(m.entries).toBe(fmt === 'jsonl' ? 6 : 7); // + the first export's own audit entry
      expect(m.verified.ok).toBe(true);
      expect(m.checkpoints.length).toBeGreaterThanOrEqual(2);
      // An auditor without the key: links, checksums, signatures.
      const offline = await verifyExportFile(out);
      expect(offline.problems).toEqual([]);
      expect(offline.macsChecked).toBe(false);
      // On the install, with the key: the MACs too.
      const withKey = await verifyExportFile(out, { auditKey: ti.install.secrets.auditKey });
      expect(withKey.ok).toBe(true);
      expect(withKey.macsChecked).toBe(true);
      const text = await readFile(out, 'utf8');
      await writeFile(out, text.replace('thing.change', 'thing.chang3'));
      const bad = await verifyExportFile(out, { auditKey: ti.install.secrets.auditKey });
      expect(bad.problems.map((p) => p.kind)).toEqual(expect.arrayContaining(['checksum', 'edited']));
    }
    void t;
  });
});

describe('the checkpointer', () => {
  it('signs the moved heads after N appended entries, and skips chains that did not move', async () => {
    const dataDir = join(ti.dir, 'cp-data');
    const cp = startCheckpointer({
      q: ti.install.admin,
      dataDir,
      signingKey: ti.install.secrets.signingKey,
      everyMinutes: 60,
      everyEntries: 3,
      onError: (err) => {
        throw err;
      },
    });
    try {
      cp.noteAppend();
      cp.noteAppend();
      await cp.stop();
      expect(await readCheckpointFile(checkpointFile(dataDir))).toEqual([]);
    } finally {
      await cp.stop();
    }
    const cp2 = startCheckpointer({
      q: ti.install.admin,
      dataDir,
      signingKey: ti.install.secrets.signingKey,
      everyMinutes: 60,
      everyEntries: 3,
      onError: () => undefined,
    });
    cp2.noteAppend(3);
    await cp2.stop();
    const first = await readCheckpointFile(checkpointFile(dataDir));
    expect(first.length).toBeGreaterThan(3);
    expect(first.every((c) => checkpointValid(c, publicKeyOf(ti.install.secrets.signingKey)))).toBe(true);
    // again with only one chain moved: one more line
    await appendAudit(ti.install.admin, { tenantId: tenants.clean!, actor: 'user:x', action: 'moved' });
    const cp3 = startCheckpointer({
      q: ti.install.admin,
      dataDir,
      signingKey: ti.install.secrets.signingKey,
      everyMinutes: 60,
      everyEntries: 1,
      onError: () => undefined,
    });
    await cp3.run(); // baseline: every head
    await appendAudit(ti.install.admin, { tenantId: tenants.clean!, actor: 'user:x', action: 'moved' });
    const n = (await readCheckpointFile(checkpointFile(dataDir))).length;
    cp3.noteAppend();
    await cp3.stop();
    const after = await readCheckpointFile(checkpointFile(dataDir));
    expect(after.length - n).toBe(1);
    expect(after.at(-1)!.tenantId).toBe(tenants.clean);
  });
});

describe('the app role', () => {
  let app: Pool;
  beforeAll(() => {
    app = createPool(db.appUrl, 1);
    registerAuditKey(app, ti.install.secrets.auditKey);
  });
  afterAll(() => app.end());

  it('writes through the server path for its own company only; a forged MAC is evident', async () => {
    const t = tenants.clean!;
    await withTenant(app, t, (c) => appendAudit(c, { tenantId: t, actor: 'user:a', action: 'ok' }));
    // A compromised app role without the key can call the append function, but cannot compute the MAC.
    await withTenant(app, t, async (c) => {
      const { rows } = await c.query<{ seq: number; at_us: number; prev_hash: Buffer }>(
        "SELECT * FROM attendux_audit_next($1, '{}')",
        [t],
      );
      const n = rows[0]!;
      await c.query(
        "SELECT attendux_audit_append($1, $2, $3, 'user:evil', 'forged', NULL, NULL, NULL, NULL, '{}', $4, $5)",
        [t, n.seq, n.at_us, n.prev_hash, Buffer.alloc(32, 1)],
      );
    });
    const r = await verifyAudit(ti.install, { tenant: 'clean' });
    expect(r.breaks.map((b) => b.kind)).toEqual(['edited']);
  });
});
