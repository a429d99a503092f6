import { join } from 'node:path';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, createPool, type Pool } from '../../src/db/pool.js';
import { makeInstall, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');

let db: TestDatabase;
let admin: Pool;
let i: TestInstall;

function run(...args: string[]) {
  return execa('node', [BIN, '--config', i.configPath, ...args], {
    reject: false,
    stdin: 'ignore',
    env: { ATTENDUX_BACKUP_IDENTITY: '' },
  });
}

beforeAll(async () => {
  db = await createTestDatabase('auditcli');
  admin = createPool(db.adminUrl, 2);
  i = await makeInstall(db);
  for (const slug of ['acme', 'globex']) {
    const r = await run('tenant', 'create', slug, '--name', slug);
    expect(r.exitCode, r.stderr).toBe(0);
  }
  for (let n = 0; n < 3; n++) {
    const r = await run('user', 'create', `u${n}@acme.example`, '-t', 'acme');
    expect(r.exitCode, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await admin.end();
  await db.drop();
  await i.cleanup();
});

async function superuser(...sql: string[]) {
  const su = await connectClient(db.superuserUrl.replace(/\/[^/]*$/, `/${db.name}`));
  try {
    await su.query('ALTER TABLE audit_log DISABLE TRIGGER USER');
    for (const s of sql) await su.query(s);
    await su.query('ALTER TABLE audit_log ENABLE TRIGGER USER');
  } finally {
    await su.end();
  }
}

describe('attendux audit (binary)', () => {
  it('log: newest first, with filters, as text, JSON lines and CSV', async () => {
    const text = await run('audit', 'log', '-t', 'acme');
    expect(text.exitCode, text.stderr).toBe(0);
    const lines = text.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/user\.create/);
    expect(lines.at(-1)).toMatch(/tenant\.create/);
    const json = await run('audit', 'log', '-t', 'acme', '--action', 'user.create', '--json');
    const rows = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; seq: number });
    expect(rows.map((r) => r.action)).toEqual(['user.create', 'user.create', 'user.create']);
    expect(rows.map((r) => r.seq)).toEqual([4, 3, 2]);
    const limited = await run('audit', 'log', '--limit', '2', '--json');
    expect(limited.stdout.trim().split('\n')).toHaveLength(2);
    const csv = await run('audit', 'log', '-t', 'acme', '--entity', 'tenant', '--csv');
    expect(csv.stdout.split('\n')[0]).toBe('tenantId,seq,at,actor,action,entityType,entityId,ipHash,details');
    expect(csv.stdout).toMatch(/tenant\.create/);
    const none = await run('audit', 'log', '--since', '2999-01-01', '--json');
    expect([none.exitCode, none.stdout]).toEqual([0, '']);
    expect((await run('audit', 'log', '--since', 'soon')).exitCode).toBe(2);
  });

  it('verify: exit 0 when intact, 1 with every break listed, and a backup of a broken chain warns loudly', async () => {
    const ok = await run('audit', 'verify');
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ok: \d+ entries in 3 chain\(s\)/m);

    const first = await run('backup', 'full', '--json');
    expect(first.exitCode, first.stderr).toBe(0);
    const sc = JSON.parse(first.stdout) as {
      sidecar: { id: string; audit: { verified: { ok: boolean }; checkpoints: unknown[] } };
    };
    expect(sc.sidecar.audit.verified.ok).toBe(true);
    expect(sc.sidecar.audit.checkpoints.length).toBe(3);

    await superuser(
      "UPDATE audit_log SET actor = 'cli:mallory' WHERE action = 'user.create' AND seq = 3",
      "DELETE FROM audit_log WHERE action = 'tenant.create' AND tenant_id <> '00000000-0000-0000-0000-000000000000' AND entity_id = (SELECT id::text FROM tenants WHERE slug = 'globex')",
    );
    const bad = await run('audit', 'verify', '--json');
    expect(bad.exitCode).toBe(1);
    const r = JSON.parse(bad.stdout) as { ok: boolean; breaks: { kind: string; seq: number }[] };
    expect(r.ok).toBe(false);
    // the edit, and globex's only entry deleted: the backup's signed checkpoint says the chain existed
    expect(r.breaks.map((b) => b.kind).sort()).toEqual(['edited', 'missing']);
    expect(bad.stderr).toMatch(/AUDIT_BROKEN|does not verify/);

    const b = await run('backup', 'full');
    expect(b.exitCode).toBe(0);
    expect(b.stderr).toMatch(/WARNING: the audit log in this backup does NOT verify: 2 break/);
    const status = await run('backup', 'status', '--json');
    const st = JSON.parse(status.stdout) as {
      kinds: { kind: string; audit?: { ok: boolean }; problem?: string }[];
    };
    const full = st.kinds.find((k) => k.kind === 'full')!;
    expect(full.audit?.ok).toBe(false);
    expect(full.problem).toMatch(/AUDIT LOG BROKEN/);
    expect(status.exitCode).toBe(1);

    // a drill of that backup records the verification among its checks
    const drill = await run('restore', '--drill', '--json', '-i', i.identityFile);
    const d = JSON.parse(drill.stdout) as {
      ok: boolean;
      checks: { name: string; ok: boolean; detail: string }[];
    };
    const check = d.checks.find((c) => c.name === 'audit-chains')!;
    expect(check.ok).toBe(false);
    expect(check.detail).toMatch(/edited/);
    expect(drill.exitCode).toBe(1);
    // and its signed record beside the backup keeps the verification: counts and the breaks themselves
    const drills = (await readdir(i.backupDir)).filter((n) => n.endsWith('.drill.json'));
    expect(drills).toHaveLength(1);
    const rec = JSON.parse(await readFile(join(i.backupDir, drills[0]!), 'utf8')) as {
      audit: {
        ok: boolean;
        verification: { ok: boolean; breakCount: number; checked: number; breaks: { kind: string }[] };
      };
    };
    expect(rec.audit.ok).toBe(false);
    // the edit; globex's deleted chain is not in the restored backup's checkpoints (taken after it)
    expect(rec.audit.verification).toMatchObject({ ok: false, breakCount: 1 });
    expect(rec.audit.verification.checked).toBeGreaterThan(0);
    expect(rec.audit.verification.breaks.map((x) => x.kind)).toEqual(['edited']);
  });

  it('verify threads, as built: worker threads in one snapshot find what one walk finds', async () => {
    // dist/, as the binary runs it: the worker is dist/core/audit/verify-worker.js, not the TypeScript
    type V = typeof import('../../src/core/audit/verify.js');
    type M = typeof import('../../src/core/audit/mac.js');
    const v = (await import(join(import.meta.dirname, '../../dist/core/audit/verify.js'))) as V;
    const m = (await import(join(import.meta.dirname, '../../dist/core/audit/mac.js'))) as M;
    const { auditKey } = JSON.parse(await readFile(i.secretsPath, 'utf8')) as { auditKey: string };
    const mac = new m.AuditMac(Buffer.from(auditKey, 'base64'));
    const one = await v.verifyWith(admin, { mac, publicKey: '', checkpoints: [], parallel: 1 });
    const three = await v.verifyWith(admin, { mac, publicKey: '', checkpoints: [], parallel: 3 });
    expect(one.breaks.map((b) => b.kind)).toContain('edited'); // the edit of the test above
    expect(three).toEqual(one);
  });

  it('export + verify --file: offline verification, and a changed file is caught', async () => {
    const out = join(i.dir, 'acme-audit.jsonl');
    const e = await run('audit', 'export', '-t', 'acme', '--out', out, '--json');
    expect(e.exitCode, e.stderr).toBe(0);
    const m = JSON.parse(e.stdout) as { entries: number; verified: { ok: boolean } };
    expect(m.entries).toBeGreaterThanOrEqual(4);
    expect(m.verified.ok).toBe(false); // the edit above is inside the range, and the manifest says so
    const v = await run('audit', 'verify', '--file', out, '--json');
    expect(v.exitCode).toBe(1);
    // A clean range verifies: the system chain was not touched.
    const out2 = join(i.dir, 'system.csv');
    expect((await run('audit', 'export', '-t', 'system', '--out', out2)).exitCode).toBe(0);
    const v2 = await run('audit', 'verify', '--file', out2);
    expect(v2.exitCode, v2.stdout + v2.stderr).toBe(0);
    expect(v2.stdout).toMatch(/^ok: \d+ entries/m);
    await writeFile(out2, (await readFile(out2, 'utf8')).replace('tenant.create', 'tenant.delete'));
    const v3 = await run('audit', 'verify', '--file', out2, '--json');
    expect(v3.exitCode).toBe(1);
    expect(JSON.parse(v3.stdout).problems.map((p: { kind: string }) => p.kind)).toContain('checksum');
  });

  it('purge: --dry-run, refuses without --yes, deletes nothing younger than the retention', async () => {
    const dry = await run('audit', 'purge', '--older-than', '30d', '--dry-run', '--json');
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout).deleted).toBe(0);
    const refused = await run('audit', 'purge');
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    const purge = await run('audit', 'purge', '--yes', '--json');
    expect(purge.exitCode, purge.stderr).toBe(0);
    expect(JSON.parse(purge.stdout)).toMatchObject({ deleted: 0, olderThanDays: 365 });
    expect((await run('audit', 'purge', '--older-than', 'soon', '--yes')).exitCode).toBe(2);
  });

  it('doctor --json: the stable shape, exit 1 on a failed check', async () => {
    const r = await run('doctor', '--json');
    const j = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { id: string; status: string; message: string; fix: string | null }[];
    };
    expect(Object.keys(j).sort()).toEqual(['checks', 'ok']);
    expect(j.checks.map((c) => c.id)).toEqual(
      expect.arrayContaining([
        'config.valid',
        'db.app-role',
        'db.rls',
        'backup.recipients',
        'host.encrypted',
      ]),
    );
    for (const c of j.checks) expect(['pass', 'warn', 'fail', 'skip']).toContain(c.status);
    // the test config carries database passwords in its URLs: config.no-secret-in-config fails
    expect(j.checks.find((c) => c.id === 'config.no-secret-in-config')!.status).toBe('fail');
    expect(j.ok).toBe(false);
    expect(r.exitCode).toBe(1);
    const text = await run('doctor');
    expect(text.stdout).toMatch(/^FAIL  config\.no-secret-in-config/m);
    expect(text.stdout).toMatch(/^ {6}fix: /m);
  });
});
