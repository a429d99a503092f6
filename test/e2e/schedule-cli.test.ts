import { createServer, type Server } from 'node:http';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { hasCommandOf } from '../../src/cli/commands/schedule.js';
import {
  CRON_BEGIN,
  CRON_END,
  GENERATED,
  installCrontab,
  uninstallCrontab,
} from '../../src/core/schedule/install.js';
import { makeInstall, patchConfig, type TestInstall } from '../helpers/backup.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { promtoolCheck } from '../helpers/promtool.js';

const BIN = join(import.meta.dirname, '../../bin/attendux.js');

let db: TestDatabase;
let scratch: string;
const installs: TestInstall[] = [];

/** Every built-in job off, so a test schedules only what it is about. */
const ALL_OFF = Object.fromEntries(
  [
    'backup-full',
    'backup-incremental',
    'backup-config',
    'backup-prune',
    'audit-verify',
    'audit-purge',
    'retention-apply',
    'dsar-overdue',
  ].map((id) => [id, { enabled: false }]),
);

async function install(opts: Parameters<typeof makeInstall>[1] = {}): Promise<TestInstall> {
  const i = await makeInstall(db, opts);
  installs.push(i);
  return i;
}

/** The real binary as cron runs it: no terminal, nothing on stdin. */
function run(i: TestInstall, args: string[], env: Record<string, string> = {}) {
  return execa('node', [BIN, '--config', i.configPath, ...args], {
    reject: false,
    stdin: 'ignore',
    env: { ATTENDUX_BACKUP_IDENTITY: '', ...env },
  });
}

async function record(i: TestInstall, job: string) {
  return JSON.parse(await readFile(join(i.dataDir, 'jobs', `${job}.json`), 'utf8')) as {
    last: {
      outcome: string;
      durationMs: number;
      bytes: number | null;
      exitCode: number;
      error?: { message: string };
    };
    lastSuccess: { bytes: number | null } | null;
  };
}

/** A fake program on PATH that appends its arguments (and stdin) to a log: stands in for systemctl/crontab. */
async function fakeProgram(name: string, script: string): Promise<{ path: string; log: string }> {
  const dir = await mkdtemp(join(scratch, `fake-${name}-`));
  const log = join(dir, 'log');
  await writeFile(join(dir, name), `#!/bin/sh\nLOG=${log}\n${script}\n`);
  await chmod(join(dir, name), 0o755);
  return { path: `${dir}:${process.env.PATH}`, log };
}

beforeAll(async () => {
  db = await createTestDatabase('sched');
  scratch = await mkdtemp(join(tmpdir(), 'attendux-schedule-'));
});

afterAll(async () => {
  await db.drop();
  for (const i of installs) await i.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

describe('schedule show and config validation', () => {
  it('lists every job, marks jobs whose command is not in this version, and computes next runs', async () => {
    const i = await install();
    await patchConfig(i, (c) => (c.schedule = { timeZone: 'Europe/Berlin' }));
    const r = await run(i, ['--json', 'schedule', 'show']);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as {
      timeZone: string;
      jobs: {
        id: string;
        cron: string;
        available: boolean;
        unavailableReason?: string;
        next: { at: string; local: string }[];
      }[];
    };
    expect(out.timeZone).toBe('Europe/Berlin');
    const byId = new Map(out.jobs.map((j) => [j.id, j]));
    expect([...byId.keys()]).toEqual([
      'backup-full',
      'backup-incremental',
      'backup-config',
      'backup-prune',
      'audit-verify',
      'audit-purge',
      'retention-apply',
      'dsar-overdue',
      'restore-drill',
    ]);
    expect(byId.get('backup-full')!.cron).toBe('0 2 * * *');
    expect(byId.get('backup-full')!.next).toHaveLength(3);
    expect(byId.get('backup-full')!.next[0]!.local).toMatch(/ 02:00 GMT\+[12]$|03:00 GMT\+2$/);
    // Jobs of commands other changes add are listed, and available exactly when the command exists.
    const has = hasCommandOf(buildProgram());
    for (const [id, words] of [
      ['audit-verify', ['audit', 'verify']],
      ['audit-purge', ['audit', 'purge', '--yes']],
      ['retention-apply', ['retention', 'apply', '--yes']],
      ['dsar-overdue', ['dsar', 'list', '--overdue']],
    ] as const) {
      expect(byId.get(id)!.available, id).toBe(has([...words]));
      if (!has([...words])) {
        expect(byId.get(id)!.unavailableReason).toBe(
          `\`attendux ${words.join(' ')}\` is not in this version`,
        );
        expect(byId.get(id)!.next).toEqual([]);
      }
    }
    // The guard checks subcommands and flags against the real command tree.
    expect(has(['backup', 'prune', '--yes'])).toBe(true);
    expect(has(['backup', 'prune', '--no-such-flag'])).toBe(false);
    expect(has(['backup', 'full', '--quiet'])).toBe(true); // a global flag
    expect(has(['backup', 'nope'])).toBe(false);
    // The drill needs an identity on the server to decrypt.
    expect(byId.get('restore-drill')!.available).toBe(false);
    await patchConfig(i, (c) => (c.backup.identityFile = i.identityFile));
    const again = JSON.parse((await run(i, ['--json', 'schedule', 'show'])).stdout) as typeof out;
    expect(again.jobs.find((j) => j.id === 'restore-drill')!.available).toBe(true);
  });

  it('a bad cron expression stops every command with the key and the expression, exit 2', async () => {
    const i = await install();
    await patchConfig(i, (c) => (c.schedule = { jobs: { 'backup-prune': { cron: '0 3 * * 8' } } }));
    for (const args of [
      ['schedule', 'show'],
      ['backup', 'list'],
    ]) {
      const r = await run(i, args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(
        /key "schedule\.jobs\.backup-prune\.cron": invalid cron expression "0 3 \* \* 8"/,
      );
    }
    const env = await run(i, ['schedule', 'show'], { ATTENDUX_BACKUP_SCHEDULE_FULL: '99 2 * * *' });
    expect(env.exitCode).toBe(2);
    expect(env.stderr).toContain('key "backup.schedule.full": invalid cron expression "99 2 * * *"');
  });
});

describe('schedule install --systemd', () => {
  it('writes hardened units that pass systemd-analyze verify, idempotently, and uninstall removes exactly them', async () => {
    const i = await install();
    await patchConfig(i, (c) => (c.schedule = { timeZone: 'Europe/Berlin' }));
    const dir = await mkdtemp(join(scratch, 'units-'));
    const foreign = join(dir, 'attendux-local.service');
    await writeFile(foreign, '[Service]\nExecStart=/bin/true\n');
    await writeFile(join(dir, 'other.service'), '[Service]\nExecStart=/bin/true\n');

    const preview = await run(i, ['schedule', 'install', '--systemd', '--dir', dir, '--dry-run']);
    expect(preview.exitCode, preview.stderr).toBe(0);
    expect(preview.stdout).toContain(`would be created: ${join(dir, 'attendux-backup-full.timer')}`);
    expect(preview.stdout).toContain('    OnCalendar=*-*-* 02:00:00 Europe/Berlin');
    expect((await readdir(dir)).sort()).toEqual(['attendux-local.service', 'other.service']);
    const r = await run(i, ['schedule', 'install', '--systemd', '--dir', dir, '--user', 'attendux']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('systemctl daemon-reload');
    expect(r.stdout).toContain('systemctl enable --now attendux.service attendux-backup-full.timer');
    const ours = (await readdir(dir))
      .filter((n) => n !== 'attendux-local.service' && n !== 'other.service')
      .sort();
    expect(ours).toEqual([
      'attendux-audit-purge.service',
      'attendux-audit-purge.timer',
      'attendux-audit-verify.service',
      'attendux-audit-verify.timer',
      'attendux-backup-config.service',
      'attendux-backup-config.timer',
      'attendux-backup-full.service',
      'attendux-backup-full.timer',
      'attendux-backup-incremental.service',
      'attendux-backup-incremental.timer',
      'attendux-backup-prune.service',
      'attendux-backup-prune.timer',
      'attendux-dsar-overdue.service',
      'attendux-dsar-overdue.timer',
      'attendux-retention-apply.service',
      'attendux-retention-apply.timer',
      'attendux.service',
    ]);
    const verify = await execa('systemd-analyze', ['verify', ...ours.map((n) => join(dir, n))], {
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(verify.stderr).toBe('');

    const service = await readFile(join(dir, 'attendux-backup-full.service'), 'utf8');
    expect(service.split('\n')[0]).toBe(GENERATED);
    for (const line of [
      'Type=oneshot',
      'User=attendux',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      `ReadWritePaths=${i.dataDir}`,
      'UMask=0077',
      'SuccessExitStatus=75',
      `Environment=ATTENDUX_CONFIG=${i.configPath}`,
      `ExecStart=${process.execPath} ${BIN} --quiet schedule exec --trigger systemd backup-full`,
    ])
      expect(service).toContain(`\n${line}\n`);
    const timer = await readFile(join(dir, 'attendux-backup-full.timer'), 'utf8');
    expect(timer).toContain('\nOnCalendar=*-*-* 02:00:00 Europe/Berlin\n');
    expect(timer).toMatch(/\nOnCalendar=\d{4}-03-\d\d 03:00:00 Europe\/Berlin\n/); // the spring-forward runs
    expect(timer).toContain('\nPersistent=true\n');
    expect(timer).not.toContain('RandomizedDelaySec=');
    expect(await readFile(join(dir, 'attendux-backup-prune.timer'), 'utf8')).toContain(
      '\nRandomizedDelaySec=10min\n',
    );
    const server = await readFile(join(dir, 'attendux.service'), 'utf8');
    expect(server).toContain(`\nExecStart=${process.execPath} ${BIN} serve\n`);
    expect(server).toContain('\nProtectSystem=strict\n');

    // A re-run changes nothing; a disabled job's units go away; a file attendux did not write is refused.
    const again = await run(i, [
      '--json',
      'schedule',
      'install',
      '--systemd',
      '--dir',
      dir,
      '--user',
      'attendux',
    ]);
    expect((JSON.parse(again.stdout) as { files: { action: string }[] }).files.map((f) => f.action)).toEqual(
      Array(17).fill('unchanged'),
    );
    await patchConfig(i, (c) => (c.schedule.jobs = { 'backup-prune': { enabled: false } }));
    const fewer = await run(i, [
      '--json',
      'schedule',
      'install',
      '--systemd',
      '--dir',
      dir,
      '--user',
      'attendux',
    ]);
    const files = (JSON.parse(fewer.stdout) as { files: { path: string; action: string }[] }).files;
    expect(
      files
        .filter((f) => f.action === 'removed')
        .map((f) => f.path)
        .sort(),
    ).toEqual([join(dir, 'attendux-backup-prune.service'), join(dir, 'attendux-backup-prune.timer')]);
    expect(await readdir(dir)).not.toContain('attendux-backup-prune.timer');

    const hand = await mkdtemp(join(scratch, 'units-hand-'));
    await writeFile(join(hand, 'attendux.service'), '[Service]\nExecStart=/bin/true\n');
    const refused = await run(i, ['schedule', 'install', '--systemd', '--dir', hand]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(
      `${join(hand, 'attendux.service')} exists and was not written by attendux`,
    );

    const dry = await run(i, ['schedule', 'uninstall', '--systemd', '--dir', dir, '--dry-run']);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toContain('would be removed');
    expect((await readdir(dir)).length).toBe(17);
    const un = await run(i, ['schedule', 'uninstall', '--systemd', '--dir', dir]);
    expect(un.exitCode, un.stderr).toBe(0);
    expect(un.stdout).toMatch(/systemctl disable --now .*attendux-backup-config\.timer/);
    expect((await readdir(dir)).sort()).toEqual(['attendux-local.service', 'other.service']);
  });

  it('--enable runs systemctl daemon-reload and enable --now (a stand-in systemctl on PATH)', async () => {
    const i = await install();
    await patchConfig(i, (c) => (c.schedule = { jobs: { ...ALL_OFF, 'backup-full': { enabled: true } } }));
    const dir = await mkdtemp(join(scratch, 'units-enable-'));
    const fake = await fakeProgram('systemctl', 'echo "$@" >> "$LOG"');
    const r = await run(i, ['schedule', 'install', '--systemd', '--dir', dir, '--enable'], {
      PATH: fake.path,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await readFile(fake.log, 'utf8')).toBe(
      'daemon-reload\nenable --now attendux.service attendux-backup-full.timer\n',
    );
    const un = await run(i, ['schedule', 'uninstall', '--systemd', '--dir', dir, '--disable'], {
      PATH: fake.path,
    });
    expect(un.exitCode, un.stderr).toBe(0);
    expect((await readFile(fake.log, 'utf8')).split('\n').slice(2, 4)).toEqual([
      'disable --now attendux-backup-full.timer attendux.service',
      'daemon-reload',
    ]);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('schedule install --crontab', () => {
  it('as root writes one block into <dir>/attendux, replaces it on a re-run, and uninstall removes it', async () => {
    const i = await install();
    const dir = await mkdtemp(join(scratch, 'crond-'));
    const r = await run(i, ['schedule', 'install', '--crontab', '--dir', dir, '--user', 'attendux']);
    expect(r.exitCode, r.stderr).toBe(0);
    const file = join(dir, 'attendux');
    const first = await readFile(file, 'utf8');
    expect(first).toContain(CRON_BEGIN);
    expect(first).toContain(
      `0 2 * * * attendux ${process.execPath} ${BIN} --config ${i.configPath} --quiet schedule exec --trigger cron backup-full\n`,
    );
    expect(first).toContain(`*/15 * * * * attendux ${process.execPath}`);
    expect(first).not.toMatch(/^[^#].*flock/m);
    // An admin's own line in the file stays where it is, around the block.
    await writeFile(file, first + '5 5 * * * root /usr/local/bin/mine\n');
    await patchConfig(i, (c) => (c.schedule = { jobs: { 'backup-full': { cron: '0 3 * * *' } } }));
    for (let n = 0; n < 2; n++) {
      const again = await run(i, ['schedule', 'install', '--crontab', '--dir', dir, '--user', 'attendux']);
      expect(again.exitCode).toBe(0);
    }
    const text = await readFile(file, 'utf8');
    expect(text.split(CRON_BEGIN).length).toBe(2);
    expect(text.split(CRON_END).length).toBe(2);
    expect(text).toContain('0 3 * * * attendux');
    expect(text).not.toContain('0 2 * * * attendux');
    expect(text.endsWith('5 5 * * * root /usr/local/bin/mine\n')).toBe(true);

    const un = await run(i, ['schedule', 'uninstall', '--crontab', '--dir', dir]);
    expect(un.exitCode, un.stderr).toBe(0);
    expect(await readFile(file, 'utf8')).toBe('5 5 * * * root /usr/local/bin/mine\n');
    // Only ours left: the file goes with the block.
    await run(i, ['schedule', 'install', '--crontab', '--dir', dir]);
    await writeFile(file, (await readFile(file, 'utf8')).replace('5 5 * * * root /usr/local/bin/mine\n', ''));
    await run(i, ['schedule', 'uninstall', '--crontab', '--dir', dir]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a user crontab (a file, or crontab(1)) gets the block without a user column, the rest kept', async () => {
    const i = await install();
    const tab = join(await mkdtemp(join(scratch, 'tab-')), 'crontab');
    await writeFile(tab, 'MAILTO=me@example.com\n@reboot /home/me/start\n');
    for (let n = 0; n < 2; n++)
      expect((await run(i, ['schedule', 'install', '--crontab', '--crontab-file', tab])).exitCode).toBe(0);
    const text = await readFile(tab, 'utf8');
    expect(text.startsWith('MAILTO=me@example.com\n@reboot /home/me/start\n' + CRON_BEGIN)).toBe(true);
    expect(text).toContain(`\n0 2 * * * ${process.execPath} ${BIN} --config`);
    expect(text.split(CRON_BEGIN).length).toBe(2);
    await run(i, ['schedule', 'uninstall', '--crontab', '--crontab-file', tab]);
    expect(await readFile(tab, 'utf8')).toBe('MAILTO=me@example.com\n@reboot /home/me/start\n');

    // Not root: crontab -l, then crontab - with the new text (a stand-in crontab keeps it in a file).
    const fake = await fakeProgram(
      'crontab',
      'STORE="$LOG.tab"\nif [ "$1" = "-l" ]; then [ -f "$STORE" ] && cat "$STORE" || { echo "no crontab for test" >&2; exit 1; }; else cat > "$STORE"; fi',
    );
    const has = hasCommandOf(buildProgram());
    const crontab = fake.path.split(':')[0] + '/crontab';
    const opts = { configPath: i.configPath, hasCommand: has, isRoot: false, crontabCommand: crontab };
    await installCrontab(opts);
    await installCrontab(opts);
    const stored = await readFile(`${fake.log}.tab`, 'utf8');
    expect(stored.split(CRON_BEGIN).length).toBe(2);
    expect(stored).toMatch(/\n0 2 \* \* \* \/\S+ \S+ --config /);
    await uninstallCrontab(opts);
    expect(await readFile(`${fake.log}.tab`, 'utf8')).toBe('');
  });
});

/** A local HTTP server that records healthchecks-style pings. */
async function pingServer(): Promise<{
  server: Server;
  url: string;
  hits: { method: string; url: string; body: string }[];
}> {
  const hits: { method: string; url: string; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      hits.push({ method: req.method!, url: req.url!, body });
      res.end('OK');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

describe('schedule exec: cron-friendly job runs', () => {
  it('is silent on success without a terminal and records result, duration and size for backup status', async () => {
    const i = await install();
    const r = await run(i, ['schedule', 'exec', 'backup-full']);
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, '', '']);
    const rec = await record(i, 'backup-full');
    expect(rec.last.outcome).toBe('success');
    expect(rec.last.durationMs).toBeGreaterThan(0);
    expect(rec.last.bytes).toBeGreaterThan(0);
    const files = await readdir(i.backupDir);
    const sidecar = files.find((f) => f.endsWith('.json') && !f.startsWith('last-run'))!;
    expect(rec.last.bytes).toBe(
      (JSON.parse(await readFile(join(i.backupDir, sidecar), 'utf8')) as { bytes: number }).bytes,
    );
    const json = await run(i, ['--json', 'schedule', 'exec', 'backup-config']);
    expect(json.exitCode).toBe(0);
    expect((JSON.parse(json.stdout) as { run: { outcome: string } }).run.outcome).toBe('success');
    // backup status reads the job runs too.
    const st = JSON.parse((await run(i, ['--json', 'backup', 'status'])).stdout) as {
      jobs: { job: string; outcome: string; bytes: number | null }[];
    };
    expect(st.jobs.find((j) => j.job === 'backup-full')).toMatchObject({
      outcome: 'success',
      bytes: rec.last.bytes,
    });
  });

  it('on a terminal it prints one line on success, and nothing with --quiet (script(1) provides the terminal)', async () => {
    const i = await install();
    const onTty = (quiet: boolean) =>
      execa(
        'script',
        [
          '-qec',
          `node ${BIN} --config ${i.configPath}${quiet ? ' --quiet' : ''} schedule exec backup-prune`,
          '/dev/null',
        ],
        { reject: false, stdin: 'ignore' },
      );
    const loud = await onTty(false);
    expect(loud.exitCode).toBe(0);
    expect(loud.stdout.trim()).toMatch(/^backup-prune: ok in [\d.]+ s$/);
    const quiet = await onTty(true);
    expect([quiet.exitCode, quiet.stdout]).toEqual([0, '']);
  });

  it('a failing job prints one line on stderr, exits 1, runs the notify hook with its JSON and pings /fail', async () => {
    const i = await install({ recipients: false });
    const hook = join(i.dir, 'notified.jsonl');
    const ping = await pingServer();
    try {
      await patchConfig(i, (c) => {
        c.notify = {
          command: ['sh', '-c', `cat >> ${hook}; echo "$ATTENDUX_EVENT $ATTENDUX_JOB" >> ${hook}.env`],
          pingUrl: `${ping.url}/hc/{job}`,
        };
      });
      const r = await run(i, ['schedule', 'exec', 'backup-full']);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n')).toEqual([
        'attendux: job backup-full failed: no backup recipients configured (backup.recipients is empty)',
      ]);
      const sent = JSON.parse(await readFile(hook, 'utf8')) as {
        event: string;
        job: string;
        host: string;
        run: { outcome: string; exitCode: number; error: { code: string; message: string } };
      };
      expect(sent).toMatchObject({
        event: 'failure',
        job: 'backup-full',
        run: { outcome: 'failure', exitCode: 1 },
      });
      expect(sent.run.error).toEqual({
        code: 'BACKUP_NO_RECIPIENTS',
        message: 'no backup recipients configured (backup.recipients is empty)',
      });
      expect(await readFile(`${hook}.env`, 'utf8')).toBe('failure backup-full\n');
      expect(ping.hits.map((h) => `${h.method} ${h.url}`)).toEqual([
        'GET /hc/backup-full/start',
        'POST /hc/backup-full/fail',
      ]);
      expect(JSON.parse(ping.hits[1]!.body)).toMatchObject({ job: 'backup-full', outcome: 'failure' });
      expect((await record(i, 'backup-full')).last.outcome).toBe('failure');

      // A success pings the plain URL.
      const ok = await run(i, ['schedule', 'exec', 'backup-prune']);
      expect(ok.exitCode, ok.stderr).toBe(0);
      expect(ping.hits.slice(2).map((h) => `${h.method} ${h.url}`)).toEqual([
        'GET /hc/backup-prune/start',
        'POST /hc/backup-prune',
      ]);
    } finally {
      ping.server.close();
    }
  });

  it('a run that finds the previous one still going says so and exits 75, never running twice', async () => {
    const i = await install();
    const marks = join(i.dir, 'marks');
    await patchConfig(i, (c) => {
      c.schedule = {
        jobs: {
          slow: {
            cron: '0 4 * * *',
            exec: ['sh', '-c', `echo start >> ${marks}; sleep 2; echo end >> ${marks}`],
          },
        },
      };
    });
    const first = run(i, ['schedule', 'exec', 'slow']);
    for (let n = 0; n < 100 && !(await readFile(marks, 'utf8').catch(() => '')).includes('start'); n++)
      await new Promise((r) => setTimeout(r, 50));
    const second = await run(i, ['schedule', 'exec', 'slow']);
    expect(second.exitCode).toBe(75);
    expect(second.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(/^attendux: job slow is already running \(pid \d+, since .*\); skipped$/);
    expect((await first).exitCode).toBe(0);
    expect(await readFile(marks, 'utf8')).toBe('start\nend\n');
    expect((await record(i, 'slow')).last.outcome).toBe('success');
  });
});

describe('schedule exec when the command itself is locked', () => {
  it('a backup started by hand makes the scheduled one exit 75, recorded as skipped, not as a run', async () => {
    const i = await install();
    await mkdir(i.dataDir, { recursive: true });
    // A live backup of this host holds the backup lock (this test process plays it).
    await writeFile(
      join(i.dataDir, 'backup.lock'),
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        startedAt: new Date().toISOString(),
        command: 'backup full',
      }),
    );
    const r = await run(i, ['schedule', 'exec', 'backup-full']);
    expect(r.exitCode).toBe(75);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^attendux: job backup-full skipped: another backup is running: pid \d+ on /),
    ]);
    const rec = JSON.parse(await readFile(join(i.dataDir, 'jobs', 'backup-full.json'), 'utf8')) as {
      last: { outcome: string };
      lastStarted: unknown;
    };
    expect(rec.last.outcome).toBe('skipped');
    expect(rec.lastStarted).toBeNull();
  });
});

describe('schedule exec under a stopping unit', () => {
  it('passes SIGTERM on to the job and records the run as stopped', async () => {
    const i = await install();
    const marks = join(i.dir, 'marks');
    await patchConfig(i, (c) => {
      c.schedule = {
        jobs: { long: { cron: '0 4 * * *', exec: ['sh', '-c', `echo start >> ${marks}; exec sleep 30`] } },
      };
    });
    const child = run(i, ['schedule', 'exec', 'long']);
    for (let n = 0; n < 100 && !(await readFile(marks, 'utf8').catch(() => '')).includes('start'); n++)
      await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    child.kill('SIGTERM');
    const r = await child;
    expect(Date.now() - t0).toBeLessThan(20_000); // the sleep was ended, not waited for
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('attendux: job long failed: stopped (SIGTERM) before it finished');
    const rec = await record(i, 'long');
    expect(rec.last.outcome).toBe('failure');
    // The lock is released: the next run is not refused.
    await patchConfig(i, (c) => (c.schedule.jobs.long.exec = ['true']));
    expect((await run(i, ['schedule', 'exec', 'long'])).exitCode).toBe(0);
  });
});

describe('schedule status', () => {
  it('exits 1 when a job is overdue or failed, tells the hook once, and writes metrics that pass promtool', async () => {
    const i = await install();
    const hook = join(i.dir, 'hook.jsonl');
    await patchConfig(i, (c) => {
      c.schedule = {
        jobs: { ...ALL_OFF, 'backup-full': { enabled: true }, 'backup-config': { enabled: true } },
      };
      c.notify = { command: `cat >> ${hook}; echo >> ${hook}` };
    });
    const fresh = await run(i, ['schedule', 'status']);
    expect(fresh.exitCode, fresh.stdout + fresh.stderr).toBe(0);
    // The schedule has been in place for three days and the full backup never ran: overdue.
    await mkdir(join(i.dataDir, 'jobs'), { recursive: true });
    const since = new Date(Date.now() - 3 * 86_400_000).toISOString();
    await writeFile(join(i.dataDir, 'jobs', 'schedule.json'), JSON.stringify({ since, via: 'test' }));
    const prom = join(i.dir, 'textfile', 'attendux_jobs.prom');
    const r = await run(i, ['--json', 'schedule', 'status', '--prometheus', prom]);
    expect(r.exitCode).toBe(1);
    const st = JSON.parse(r.stdout) as {
      ok: boolean;
      jobs: { id: string; overdue: boolean; ok: boolean; problem?: string }[];
    };
    expect(st.ok).toBe(false);
    expect(st.jobs.find((j) => j.id === 'backup-full')).toMatchObject({ overdue: true, ok: false });
    expect(st.jobs.find((j) => j.id === 'backup-full')!.problem).toMatch(
      /^overdue: the run due at .* did not start \(never ran\)$/,
    );
    expect(r.stderr).toContain('jobs need attention: backup-full overdue');

    const text = await readFile(prom, 'utf8');
    expect(await promtoolCheck(text)).toEqual({ exitCode: 0, output: '' });
    expect(text).toMatch(/^attendux_job_overdue\{job="backup-full"\} 1$/m);
    expect(text).toMatch(/^attendux_job_ok\{job="backup-full"\} 0$/m);
    expect(text).toMatch(/^attendux_job_next_run_timestamp_seconds\{job="backup-config"\} \d+$/m);

    // Any job's run tells the hook about the overdue one, once.
    for (let n = 0; n < 2; n++)
      expect((await run(i, ['schedule', 'exec', 'backup-config'])).exitCode).toBe(0);
    const told = (await readFile(hook, 'utf8'))
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string; job: string; missed: string });
    expect(told.map((t) => `${t.event} ${t.job}`)).toEqual(['overdue backup-full']);

    // It runs: no longer overdue. Then it fails: status exits 1 again, naming the failure.
    expect((await run(i, ['schedule', 'exec', 'backup-full'])).exitCode).toBe(0);
    expect((await run(i, ['schedule', 'status'])).exitCode).toBe(0);
    await patchConfig(i, (c) => (c.backup.recipients = []));
    expect((await run(i, ['schedule', 'exec', 'backup-full'])).exitCode).toBe(1);
    const failed = await run(i, ['schedule', 'status', '--prometheus', prom]);
    expect(failed.exitCode).toBe(1);
    expect(failed.stdout).toMatch(/backup-full: last run failed at .*: no backup recipients configured/);
    const text2 = await readFile(prom, 'utf8');
    expect(await promtoolCheck(text2)).toEqual({ exitCode: 0, output: '' });
    expect(text2).toMatch(/^attendux_job_last_run_success\{job="backup-full"\} 0$/m);

    // schedule.prometheusFile: every job run refreshes the textfile, and the units may write its dir.
    const tf = join(i.dir, 'node-exporter', 'attendux.prom');
    await patchConfig(i, (c) => {
      c.schedule.prometheusFile = tf;
      c.backup.recipients = [i.recipient];
    });
    expect((await run(i, ['schedule', 'exec', 'backup-config'])).exitCode).toBe(0);
    const refreshed = await readFile(tf, 'utf8');
    expect(await promtoolCheck(refreshed)).toEqual({ exitCode: 0, output: '' });
    expect(refreshed).toMatch(/^attendux_job_last_run_success\{job="backup-config"\} 1$/m);
    const units = await mkdtemp(join(scratch, 'units-tf-'));
    expect((await run(i, ['schedule', 'install', '--systemd', '--dir', units])).exitCode).toBe(0);
    const unit = await readFile(join(units, 'attendux-backup-config.service'), 'utf8');
    expect(unit).toContain(`\nReadWritePaths=${i.dataDir} -${join(i.dir, 'node-exporter')}\n`);
    const verify = await execa('systemd-analyze', ['verify', join(units, 'attendux-backup-config.service')], {
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
  });
});

describe('schedule run (foreground scheduler)', () => {
  it('runs a 1-second job, skips overlapping runs, and on SIGTERM waits for the running job, then exits 0', async () => {
    const i = await install();
    const marks = join(i.dir, 'marks');
    await patchConfig(i, (c) => {
      c.schedule = {
        jobs: {
          ...ALL_OFF,
          tick: {
            cron: '* * * * * *',
            exec: ['sh', '-c', `echo start >> ${marks}; sleep \${TICK_SLEEP:-1.6}; echo end >> ${marks}`],
          },
        },
      };
    });
    // Another run of the job already holds its lock: the scheduler's first tick must skip it (exit 75 path).
    const outside = run(i, ['schedule', 'exec', 'tick'], { TICK_SLEEP: '3' });
    for (let n = 0; n < 100 && !(await readFile(marks, 'utf8').catch(() => '')).includes('start'); n++)
      await new Promise((r) => setTimeout(r, 50));
    const sched = execa('node', [BIN, '--config', i.configPath, 'schedule', 'run'], {
      reject: false,
      stdin: 'ignore',
    });
    let out = '';
    sched.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const waitFor = async (re: RegExp, ms = 20_000) => {
      for (const end = Date.now() + ms; Date.now() < end && !re.test(out);)
        await new Promise((r) => setTimeout(r, 50));
      expect(out, `waiting for ${re}`).toMatch(re);
    };
    await waitFor(/tick: skipped: job tick is already running \(pid \d+/);
    expect((await outside).exitCode).toBe(0);
    await waitFor(/tick: ok in /);
    await waitFor(/tick: skipped: the previous run is still going/);
    // Stop in the middle of a run: it must finish (an "end" mark) before the scheduler exits 0.
    const runs = () => (out.match(/tick: started/g) ?? []).length;
    const started = runs();
    await waitFor(new RegExp(`(tick: started[\\s\\S]*){${started + 1}}`));
    sched.kill('SIGTERM');
    const done = await sched;
    expect(done.exitCode, done.stderr).toBe(0);
    expect(out).toMatch(
      /stopping: waiting for tick to finish\n.*tick: ok in [\d.]+ s\n.*scheduler stopped\n$/,
    );
    const m = (await readFile(marks, 'utf8')).trim().split('\n');
    expect(m.filter((x) => x === 'start').length).toBe(m.filter((x) => x === 'end').length);
    expect(m.at(-1)).toBe('end');
    // Never two at once: starts and ends alternate.
    expect(m.every((x, n) => x === (n % 2 === 0 ? 'start' : 'end'))).toBe(true);
    expect((await record(i, 'tick')).last.outcome).toBe('success');
  });
});
