import { execFile, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedReference } from '../../bench/seed.js';
import { hashFile } from '../../src/core/archive/bytes.js';
import { type Sidecar } from '../../src/core/archive/format.js';
import { pruneBackups } from '../../src/core/backup/prune.js';
import { loadConfig } from '../../src/core/config/load.js';
import { copyAfterBackup } from '../../src/core/offsite/copy.js';
import { offsiteStatus } from '../../src/core/offsite/status.js';
import { listTarget } from '../../src/core/offsite/remote.js';
import { createPool, type Pool } from '../../src/db/pool.js';
import { SYSTEM_TENANT } from '../../src/db/queries/audit.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { promtoolCheck } from '../helpers/promtool.js';
import { haveSshd, startS3, startSshd, type TestS3, type TestSshd } from '../helpers/offsite.js';
import { dropDatabases, tableChecksums, urlOf } from '../helpers/restore.js';

/**
 * Every table, every company's rows. The install-wide audit chain is left out: a backup's own audit
 * entries (and those of its off-site copies) are written after its snapshot, so no backup can hold them.
 */
const COMPARE = { exceptTenant: SYSTEM_TENANT };
const BIN = join(import.meta.dirname, '../../bin/attendux.js');
let db: TestDatabase;
let admin: Pool;
let inst: TestInstall;
let ssh: TestSshd;
let s3: TestS3;
let tmp: string;
let dirTarget: string;
const made: string[] = [];
const ids: string[] = [];
let configId: string;
let source: Record<string, string>;

const sftpTarget = (extra: Record<string, unknown> = {}) => ({
  name: 'sftp',
  type: 'sftp',
  host: '127.0.0.1',
  port: ssh.port,
  user: ssh.user,
  path: join(ssh.root, 'attendux'),
  hostKeyFingerprint: ssh.hostKeyFingerprint,
  privateKeyFile: ssh.privateKeyFile,
  retries: 1,
  connectTimeoutSeconds: 5,
  ...extra,
});
const s3Target = (extra: Record<string, unknown> = {}) => ({
  name: 's3',
  type: 's3',
  endpoint: s3.endpoint,
  bucket: s3.bucket,
  prefix: 'prod/attendux',
  pathStyle: true,
  partSizeMiB: 5,
  retries: 1,
  ...extra,
});

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete e.ATTENDUX_BACKUP_IDENTITY;
  delete e.ATTENDUX_CONFIG;
  return { ...e, ...extra };
}

function run(args: string[], opts: { config?: string | null; env?: Record<string, string> } = {}) {
  const cfg =
    opts.config === undefined ? ['--config', inst.configPath] : opts.config ? ['--config', opts.config] : [];
  const r = spawnSync(process.execPath, [BIN, ...cfg, ...args], {
    env: env(opts.env),
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The same, without blocking this process (the Object Lock proxy below runs in it). */
function runAsync(
  args: string[],
  config: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, '--config', config, ...args],
      { env: env(), encoding: 'utf8', timeout: 180_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const json = <T>(r: { stdout: string }) => JSON.parse(r.stdout) as T;

async function s3ObjectFile(key: string): Promise<string> {
  // s3rver keeps each object as <dir>/<bucket>/<key>._S3rver_object
  const p = join(s3.dir, s3.bucket, `${key}._S3rver_object`);
  await stat(p);
  return p;
}

async function flipByte(file: string, at: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

async function auditActions(): Promise<string[]> {
  const { rows } = await admin.query<{ action: string }>(
    `SELECT action FROM audit_log WHERE action LIKE 'backup.offsite.%' OR action = 'restore.fetch' ORDER BY seq`,
  );
  return rows.map((r) => r.action);
}

const describeIf = haveSshd ? describe : describe.skip;

beforeAll(async () => {
  if (!haveSshd) return;
  tmp = await mkdtemp(join(tmpdir(), 'attendux-e2e-offsite-tmp-'));
  dirTarget = join(tmp, 'usb-disk');
  [ssh, s3] = await Promise.all([startSshd(), startS3()]);
  db = await createTestDatabase('e2eoffsite');
  admin = createPool(db.adminUrl, 2);
  await seedReference(admin, { companies: 2, employees: 20, events: 5_000 });
  inst = await makeInstall(db, {
    backup: {
      targets: [sftpTarget(), s3Target(), { name: 'usb', type: 'dir', path: dirTarget }],
    },
  });
  // Credentials in the secrets file, never in the config.
  const secrets = JSON.parse(await readFile(inst.secretsPath, 'utf8')) as Record<string, unknown>;
  secrets.backupTargets = { s3: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } };
  await writeFile(inst.secretsPath, JSON.stringify(secrets), { mode: 0o600 });
});

afterAll(async () => {
  if (!haveSshd) return;
  await admin?.end();
  if (db) await dropDatabases(db.superuserUrl, made);
  await db?.drop();
  await inst?.cleanup();
  await ssh?.stop();
  await s3?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describeIf('off-site copies (real sshd and s3rver)', () => {
  it('copies a full and two incrementals (and a config backup) to every target, sidecar last', async () => {
    for (const kind of ['full', 'incremental', 'incremental']) {
      await admin.query(`UPDATE employees SET full_name = full_name || '+' WHERE employee_number = 'E1'`);
      const r = run(['backup', kind, '--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = json<{ sidecar: Sidecar; offsite: { target: string; ok: boolean }[] }>(r);
      expect(out.offsite.map((o) => [o.target, o.ok])).toEqual([
        ['sftp', true],
        ['s3', true],
        ['usb', true],
      ]);
      ids.push(out.sidecar.id);
    }
    const c = run(['backup', 'config', '--json']);
    expect(c.code, c.stderr).toBe(0);
    configId = json<{ sidecar: Sidecar }>(c).sidecar.id;
    source = await tableChecksums(db.adminUrl, COMPARE);

    for (const target of ['sftp', 's3', 'usb']) {
      const l = run(['backup', 'list', '--target', target, '--json']);
      expect(l.code, l.stderr).toBe(0);
      const cat = json<{ backups: { id: string; status: string; sha256: string }[]; incomplete: string[] }>(
        l,
      );
      expect(cat.backups.map((b) => [b.id, b.status])).toEqual([...ids, configId].map((id) => [id, 'ok']));
      expect(cat.incomplete).toEqual([]);
      const v = run(['backup', 'verify', '--all', '--target', target, '--json']);
      expect(v.code, v.stderr).toBe(0);
      expect(
        json<{ backups: { ok: boolean; depth: string }[] }>(v).backups.every(
          (b) => b.ok && b.depth === 'checksum',
        ),
      ).toBe(true);
    }
    // Byte-identical copies on the SFTP server and in the dir.
    for (const id of ids) {
      const local = await hashFile(join(inst.backupDir, `${id}.tar.age`));
      expect(await hashFile(join(ssh.root, 'attendux', `${id}.tar.age`))).toEqual(local);
      expect(await hashFile(join(dirTarget, `${id}.tar.age`))).toEqual(local);
      expect(await hashFile(await s3ObjectFile(`prod/attendux/${id}.tar.age`))).toEqual(local);
    }
    // Cron: a successful sync (nothing to do) says nothing at all.
    const quiet = run(['backup', 'sync']);
    expect([quiet.code, quiet.stdout, quiet.stderr]).toEqual([0, '', '']);
    expect(await auditActions()).toContain('backup.offsite.sync');
    const st = run(['backup', 'status', '--json']);
    expect(st.code, st.stdout + st.stderr).toBe(0);
    expect(json<{ offsite: { ok: boolean; targets: { name: string; ok: boolean }[] } }>(st).offsite.ok).toBe(
      true,
    );
    expect((await auditActions()).filter((a) => a === 'backup.offsite.copy')).toHaveLength(12);
  });

  it('shows progress on a terminal (script(1) gives it one), and nothing of it in cron', async () => {
    await patchConfig(inst, (c) => {
      c.backup.targets.push({ name: 'usb2', type: 'dir', path: join(tmp, 'usb2') });
    });
    try {
      const cmd = `${process.execPath} ${BIN} --config ${inst.configPath} backup sync --target usb2`;
      const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
        env: env(),
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status, r.stdout).toBe(0);
      expect(r.stdout).toMatch(/\r\x1b\[2K(copying|checking) \S+ on usb2: [\d.]+ MB of [\d.]+ MB/);
      expect(r.stdout).toMatch(/usb2: copied 4 of 4/);
    } finally {
      await patchConfig(inst, (c) => {
        c.backup.targets = c.backup.targets.filter((t: { name: string }) => t.name !== 'usb2');
      });
      await rm(join(inst.backupDir, 'offsite-usb2.json'), { force: true });
    }
  });

  it('verify --target --identity decrypts the remote copy and checks every entry', () => {
    const v = run([
      'backup',
      'verify',
      ids[2]!,
      '--target',
      'sftp',
      '--identity',
      inst.identityFile,
      '--json',
    ]);
    expect(v.code, v.stderr).toBe(0);
    const r = json<{ backups: { ok: boolean; depth: string; entries: number }[] }>(v);
    expect(r.backups[0]).toMatchObject({ ok: true, depth: 'full' });
    expect(r.backups[0]!.entries).toBeGreaterThan(0);
  });

  it('refuses an SFTP server whose host key is not the configured one', async () => {
    await patchConfig(inst, (c) => {
      c.backup.targets.push(sftpTarget({ name: 'impostor', hostKeyFingerprint: ssh.otherFingerprint }));
    });
    try {
      const l = run(['backup', 'list', '--target', 'impostor', '--json']);
      expect(l.code).toBe(1);
      const e = json<{ error: { code: string; message: string } }>(l).error;
      expect(e.code).toBe('OFFSITE_HOST_KEY');
      expect(e.message).toContain(ssh.hostKeyFingerprint);
      // The backup itself still succeeds; the failed target is recorded and `backup status` says so.
      const b = run(['backup', 'incremental']);
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).toMatch(/not copied to target impostor/);
      const prom = join(tmp, 'attendux.prom');
      const st = run(['backup', 'status', '--json', '--prometheus', prom]);
      expect(st.code).toBe(1);
      const text = await readFile(prom, 'utf8');
      expect(text).toContain('attendux_backup_offsite_ok{target="impostor"} 0');
      expect(text).toContain('attendux_backup_offsite_ok{target="sftp"} 1');
      expect(text).toContain('attendux_backup_ok{kind="full"} 1');
      // The kinds' and the targets' families in one file still form a valid exposition.
      expect(await promtoolCheck(text)).toEqual({ exitCode: 0, output: '' });
      const targets = json<{ offsite: { targets: { name: string; ok: boolean; problem?: string }[] } }>(st)
        .offsite.targets;
      expect(targets.find((t) => t.name === 'impostor')).toMatchObject({ ok: false });
      expect(targets.find((t) => t.name === 'impostor')!.problem).toMatch(/host key/);
      expect(targets.filter((t) => t.name !== 'impostor').every((t) => t.ok)).toBe(true);
      ids.push(
        (await readdir(inst.backupDir))
          .filter((n) => /^incremental-.*\.json$/.test(n))
          .sort()
          .at(-1)!
          .slice(0, -5),
      );
    } finally {
      await patchConfig(inst, (c) => {
        c.backup.targets = c.backup.targets.filter((t: { name: string }) => t.name !== 'impostor');
      });
      await rm(join(inst.backupDir, 'offsite-impostor.json'), { force: true });
    }
    source = await tableChecksums(db.adminUrl, COMPARE);
  });

  it('with the local backup dir gone, restores from each target, table for table', async () => {
    await rm(inst.backupDir, { recursive: true, force: true });
    for (const target of ['sftp', 's3', 'usb']) {
      const into = `${db.name}_from_${target}`.slice(0, 63);
      made.push(into);
      const r = run(['restore', '--from', target, '--into', into, '-i', inst.identityFile, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(json<{ plan: { steps: { id: string }[] } }>(r).plan.steps.map((s) => s.id)).toEqual(
        ids.slice(0, 4),
      );
      expect(await tableChecksums(urlOf(db, into), COMPARE)).toEqual(source);
    }
    // The downloads went to private temp dirs that are gone again.
    expect((await readdir(tmp)).filter((n) => n.startsWith('attendux-restore-'))).toEqual([]);
    expect(await auditActions()).toContain('restore.fetch');
  });

  it('restores the config from a target on a new server (no config yet: targets and keys from the environment)', async () => {
    const fresh = await mkdtemp(join(tmp, 'new-server-'));
    const cfg = join(fresh, 'etc', 'attendux.json');
    const r = run(['restore', '--config-only', '--from', 's3', '-i', inst.identityFile, '--json'], {
      config: null,
      env: {
        ATTENDUX_CONFIG: cfg,
        ATTENDUX_BACKUP_TARGETS: JSON.stringify([s3Target()]),
        ATTENDUX_TARGET_S3_ACCESS_KEY_ID: s3.accessKeyId,
        ATTENDUX_TARGET_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(json<{ backup: string }>(r).backup).toBe(configId);
    expect(await readFile(cfg, 'utf8')).toBe(
      await readFile(inst.configPath, 'utf8').then((t) => {
        // The config backup was taken before the impostor target came and went (same content).
        return t;
      }),
    );
    const secrets = join(fresh, 'etc', 'attendux.secrets.json');
    expect((await stat(secrets)).mode & 0o777).toBe(0o600);
    expect(await readFile(secrets, 'utf8')).toBe(await readFile(inst.secretsPath, 'utf8'));
  });

  it('finds a flipped byte in a remote copy (verify --target) and restore --from refuses it', async () => {
    const victim = ids[1]!;
    await flipByte(join(ssh.root, 'attendux', `${victim}.tar.age`), 1000);
    await flipByte(await s3ObjectFile(`prod/attendux/${victim}.tar.age`), 1000);
    for (const target of ['sftp', 's3']) {
      const v = run(['backup', 'verify', '--all', '--target', target, '--json']);
      expect(v.code).toBe(1);
      const bad = json<{ backups: { id: string; ok: boolean }[] }>(v).backups.filter((b) => !b.ok);
      expect(bad.map((b) => b.id)).toEqual([victim]);
      const into = `${db.name}_bad_${target}`.slice(0, 63);
      made.push(into);
      const r = run(['restore', '--from', target, '--into', into, '-i', inst.identityFile, '--json']);
      expect(r.code).toBe(1);
      expect(json<{ error: { code: string; message: string } }>(r).error).toMatchObject({
        code: 'BACKUP_CORRUPT',
      });
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [into]);
      expect(exists.rowCount).toBe(0);
    }
  });

  it('prunes each target with the same plan as locally (chains protected, newest full kept)', async () => {
    const loc = { configPath: inst.configPath };
    const in10 = new Date(Date.now() + 10 * 86_400_000);
    const dry = await pruneBackups({ ...loc, dryRun: true, now: in10 });
    for (const t of dry.offsite!) {
      expect(t.error).toBeUndefined();
      // Incrementals (7 days) expire; the full (30 days) and the config backup (90) stay.
      expect(t.delete.map((d) => d.id).sort()).toEqual(ids.slice(1).sort());
    }
    expect((await listTarget(loc, 'usb')).backups).toHaveLength(5);
    const r = await pruneBackups({ ...loc, now: in10 });
    for (const target of ['sftp', 's3', 'usb']) {
      const cat = await listTarget(loc, target);
      expect(cat.backups.map((b) => b.id)).toEqual([ids[0], configId]);
      expect(cat.incomplete).toEqual([]);
    }
    expect(r.offsite!.every((t) => !t.error)).toBe(true);
    // A year later the newest full and the newest config backup are still there.
    await pruneBackups({ ...loc, now: new Date(Date.now() + 365 * 86_400_000) });
    expect((await listTarget(loc, 'sftp')).backups.map((b) => b.id)).toEqual([ids[0], configId]);
    expect(await auditActions()).toContain('backup.offsite.prune');
  });
});

describeIf('a target killed mid-upload', () => {
  let big: TestInstall;
  let sidecar: Sidecar;
  beforeAll(async () => {
    big = await makeInstall(db, {
      backup: {
        targets: [
          sftpTarget({ retries: 0, path: join(ssh.root, 'big') }),
          s3Target({ retries: 0, prefix: 'big' }),
        ],
      },
    });
    const secrets = JSON.parse(await readFile(big.secretsPath, 'utf8')) as Record<string, unknown>;
    secrets.backupTargets = { s3: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } };
    await writeFile(big.secretsPath, JSON.stringify(secrets), { mode: 0o600 });
    // A 64 MiB stand-in for a big backup: copying only needs the file and a sidecar that matches it.
    const { mkdir } = await import('node:fs/promises');
    await mkdir(big.backupDir, { recursive: true });
    const id = 'full-20261130T020000000Z';
    const file = join(big.backupDir, `${id}.tar.age`);
    await new Promise<void>((resolve, reject) => {
      const out = createWriteStream(file);
      out.on('error', reject);
      let left = 64;
      const more = () => {
        while (left > 0) {
          left--;
          if (!out.write(randomFillSync(Buffer.alloc(1 << 20)))) return out.once('drain', more);
        }
        out.end(resolve);
      };
      more();
    });
    const h = await hashFile(file);
    sidecar = {
      format: 'attendux-backup/1',
      id,
      kind: 'full',
      parent: null,
      chainRoot: id,
      createdAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs: 1,
      file: `${id}.tar.age`,
      bytes: h.bytes,
      sha256: h.sha256,
      tarBytes: h.bytes,
      snapshot: null,
      schemaVersion: null,
      databaseId: null,
      attenduxVersion: 'test',
      contentHash: null,
      rows: 0,
      recipients: 1,
      outcome: 'success',
    };
    await writeFile(join(big.backupDir, `${id}.json`), JSON.stringify(sidecar));
  });
  afterAll(async () => {
    await big?.cleanup();
  });

  for (const which of ['sftp', 's3'] as const) {
    it(`${which}: no copy that looks complete, and backup sync completes it`, async () => {
      const server = which === 'sftp' ? ssh : s3;
      const loaded = await loadConfig({ configPath: big.configPath });
      loaded.config.backup.targets = loaded.config.backup.targets.filter((t) => t.name === which);
      let killed = false;
      const out = await copyAfterBackup(loaded, sidecar, {
        onProgress: (p) => {
          if (!killed && p.phase === 'upload' && p.bytes > 16 << 20) {
            killed = true;
            server.kill();
          }
        },
      });
      expect(killed).toBe(true);
      expect(out).toHaveLength(1);
      expect(out[0]).toMatchObject({ target: which, ok: false });
      await server.start();
      const loc = { configPath: big.configPath };
      const cat = await listTarget(loc, which);
      // Nothing that a reader (list, restore --from, prune) would take for a backup.
      expect(cat.backups).toEqual([]);
      const files = which === 'sftp' ? await readdir(join(ssh.root, 'big')) : [];
      expect(files.filter((f) => f.startsWith(sidecar.id))).toEqual([]);
      const st = await offsiteStatus({ loaded });
      expect(st.targets.find((t) => t.name === which)).toMatchObject({ ok: false });

      const dry = run(['backup', 'sync', '--target', which, '--dry-run', '--json'], {
        config: big.configPath,
      });
      expect(dry.code, dry.stderr).toBe(0);
      expect(json<{ targets: { missing: string[] }[] }>(dry).targets[0]!.missing).toEqual([sidecar.id]);
      const sync = run(['backup', 'sync', '--target', which, '--json'], { config: big.configPath });
      expect(sync.code, sync.stderr).toBe(0);
      const r = json<{ targets: { copied: { id: string; ok: boolean }[]; removedLeftovers: string[] }[] }>(
        sync,
      );
      expect(r.targets[0]!.copied).toMatchObject([{ id: sidecar.id, ok: true }]);
      if (which === 'sftp') expect(r.targets[0]!.removedLeftovers.length).toBe(1);
      const after = await listTarget(loc, which);
      expect(after.backups.map((b) => [b.id, b.status])).toEqual([[sidecar.id, 'ok']]);
      expect(after.incomplete).toEqual([]);
      const v = run(['backup', 'verify', '--target', which, '--json'], { config: big.configPath });
      expect(v.code, v.stderr).toBe(0);
      const st2 = await offsiteStatus({ loaded: await loadConfig(loc) });
      expect(st2.targets.find((t) => t.name === which)).toMatchObject({ ok: true });
    });
  }
});

describeIf('S3 Object Lock', () => {
  let proxy: Server;
  let endpoint: string;
  const seen: { method: string; url: string; mode?: string; until?: string; checksum: boolean }[] = [];
  let lockInst: TestInstall;

  beforeAll(async () => {
    // s3rver has no Object Lock. In front of it, this proxy answers the one call it lacks
    // (GetObjectLockConfiguration: enabled, GOVERNANCE) and records the lock headers of every write; all
    // else, signatures included, goes to s3rver unchanged.
    const upstream = new URL(s3.endpoint);
    proxy = createServer((req, res) => {
      if (req.method === 'GET' && /[?&]object-lock(=|&|$)/.test(req.url ?? '')) {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
            '<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days>' +
            '</DefaultRetention></Rule></ObjectLockConfiguration>',
        );
        return;
      }
      if (req.method === 'PUT' || req.method === 'POST')
        seen.push({
          method: req.method,
          url: req.url ?? '',
          mode: req.headers['x-amz-object-lock-mode'] as string | undefined,
          until: req.headers['x-amz-object-lock-retain-until-date'] as string | undefined,
          checksum: Object.keys(req.headers).some(
            (h) => h.startsWith('x-amz-checksum-') || h === 'content-md5',
          ),
        });
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const addr = proxy.address();
    endpoint = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    lockInst = await makeInstall(db, {
      backup: {
        retention: { fullDays: 30, incrementalDays: 7, configDays: 90 },
        targets: [s3Target({ name: 'locked', endpoint, prefix: 'locked', retries: 0 })],
      },
    });
    const secrets = JSON.parse(await readFile(lockInst.secretsPath, 'utf8')) as Record<string, unknown>;
    secrets.backupTargets = { locked: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } };
    await writeFile(lockInst.secretsPath, JSON.stringify(secrets), { mode: 0o600 });
  });
  afterAll(async () => {
    await new Promise((resolve) => proxy?.close(resolve));
    await lockInst?.cleanup();
  });

  it('uploads every file with a retain-until date of its creation plus its retention, in the bucket mode', async () => {
    const r = await runAsync(['backup', 'full', '--json'], lockInst.configPath);
    expect(r.code, r.stderr).toBe(0);
    const out = json<{ sidecar: Sidecar; offsite: { ok: boolean }[] }>(r);
    expect(out.offsite).toMatchObject([{ ok: true }]);
    const until = new Date(Date.parse(out.sidecar.createdAt) + 30 * 86_400_000).toISOString();
    const writes = seen.filter((w) => w.url.includes(out.sidecar.id));
    // The data file (one PUT, or CreateMultipartUpload + parts) and the sidecar.
    const withLock = writes.filter((w) => w.mode);
    expect(withLock.length).toBeGreaterThanOrEqual(2);
    for (const w of withLock) {
      expect(w.mode).toBe('GOVERNANCE');
      expect(new Date(w.until!).toISOString()).toBe(until);
    }
    expect(withLock.some((w) => w.url.includes(`${out.sidecar.id}.json`))).toBe(true);
    // Object Lock writes must carry a checksum (AWS refuses them otherwise); this backup is one PUT.
    for (const w of withLock) expect([w.method, w.checksum]).toEqual(['PUT', true]);
    const v = await runAsync(['backup', 'verify', '--target', 'locked', '--json'], lockInst.configPath);
    expect(v.code, v.stderr).toBe(0);
  });
});

describeIf('a target that cannot be written', () => {
  it('never fails the change or the backup, and says so on stderr', async () => {
    const broken = await makeInstall(db, {
      backup: { targets: [{ name: 'broken', type: 'dir', path: '/dev/null/attendux', retries: 0 }] },
    });
    try {
      const r = run(['config', 'set', 'server.port', '8081'], { config: broken.configPath });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/config backup config-\S+ was not copied to broken/);
      const b = run(['backup', 'full'], { config: broken.configPath });
      expect(b.code, b.stderr).toBe(0);
      expect(b.stderr).toMatch(/warning: backup full-\S+ was not copied to target broken/);
      const st = run(['backup', 'status'], { config: broken.configPath });
      expect(st.code).toBe(1);
      expect(st.stdout).toMatch(/FAIL {2}target broken \(dir\): last copy failed/);
    } finally {
      await broken.cleanup();
    }
  });
});
