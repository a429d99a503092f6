import { statfs } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readCatalog } from '../archive/catalog.js';
import { backupStatus } from '../backup/status.js';
import { verifyBackups } from '../backup/verify.js';
import { SYSTEM_TENANT } from '../../db/queries/audit.js';
import { configuredTargets } from '../offsite/copy.js';
import { offsiteStatus } from '../offsite/status.js';
import { checkTargetCredentials } from '../offsite/target.js';
import { readNewestDrill } from '../restore/drill-record.js';
import { fail, pass, skip, warn, type Check } from './types.js';

const needConfig = skip('no valid config (see config.valid)');

export const backupRecipients: Check = {
  id: 'backup.recipients',
  run(env) {
    if (!env.loaded) return needConfig;
    const n = env.loaded.config.backup.recipients.length;
    if (!n)
      return fail(
        'no backup recipient: backups cannot be encrypted',
        'attendux backup add-recipient age1...',
      );
    return pass(`${n} recipient(s)`);
  },
};

export const backupIdentity: Check = {
  id: 'backup.identity',
  run(env) {
    if (!env.loaded) return needConfig;
    const places = [
      env.loaded.config.backup.identityFile,
      join(dirname(env.loaded.path), 'attendux-backup-identity.txt'),
    ].filter((p): p is string => !!p && existsSync(p));
    if (places.length)
      return warn(
        `the backup identity is on this server: ${places.join(', ')} (whoever takes the server can read the backups)`,
        'move it off the server (password manager, offline key) and unset backup.identityFile',
      );
    return pass('no backup identity on this server');
  },
};

export const backupFresh: Check = {
  id: 'backup.fresh',
  async run(env) {
    if (!env.loaded) return needConfig;
    const st = await backupStatus({ configPath: env.loaded.path, now: env.now });
    const bad = st.kinds.filter((k) => !k.ok && k.kind !== 'config');
    const cfg = st.kinds.find((k) => k.kind === 'config');
    if (bad.length)
      return fail(
        bad.map((k) => `${k.kind}: ${k.problem}`).join('; '),
        'run the backup (`attendux backup full`), fix the failing run, check the schedule',
      );
    if (!cfg?.newest) return warn('no config backup yet', 'attendux backup config');
    return pass(
      st.kinds
        .map((k) => `${k.kind} ${k.ageHours === null ? 'never' : `${k.ageHours.toFixed(1)} h ago`}`)
        .join(', '),
    );
  },
};

export const backupChain: Check = {
  id: 'backup.chain',
  async run(env) {
    if (!env.loaded) return needConfig;
    const cat = await readCatalog(env.loaded.backupDir);
    const db = cat.backups.filter((b) => b.kind !== 'config');
    const head = db[db.length - 1];
    if (!head) return skip('no database backup yet');
    if (head.status !== 'ok')
      return fail(`the newest chain is not usable: ${head.problem ?? head.status}`, 'attendux backup full');
    // Checksums only unless an identity is configured (doctor never asks for one).
    const r = await verifyBackups({ configPath: env.loaded.path, id: head.id });
    const bad = r.backups.filter((b) => !b.ok);
    if (bad.length)
      return fail(
        `backup ${bad[0]!.id} does not verify: ${bad[0]!.error?.message ?? ''}`,
        'attendux backup verify --all, then take a new full backup',
      );
    return pass(`newest chain ${head.id} verifies (${r.backups[0]?.depth ?? 'checksum'})`);
  },
};

export const backupDisk: Check = {
  id: 'backup.disk',
  async run(env) {
    if (!env.loaded) return needConfig;
    const cat = await readCatalog(env.loaded.backupDir);
    const full = cat.backups.filter((b) => b.kind === 'full').pop();
    if (!full) return skip('no full backup yet to estimate from');
    const fs = await statfs(env.loaded.backupDir).catch(() => null); // reported as a skip below
    if (!fs) return skip(`cannot stat ${env.loaded.backupDir}`);
    const free = fs.bavail * fs.bsize;
    // The next full is about the last one; staging holds the big table once more.
    const need = full.bytes * 2;
    if (free < need)
      return fail(
        `${(free / 1e6).toFixed(0)} MB free in ${env.loaded.backupDir}, the next full needs about ${(need / 1e6).toFixed(0)} MB`,
        'free space or `attendux backup prune`',
      );
    return pass(
      `${(free / 1e9).toFixed(1)} GB free, the next full needs about ${(need / 1e6).toFixed(0)} MB`,
    );
  },
};

export const backupDrill: Check = {
  id: 'backup.drill',
  async run(env) {
    const fixLine = 'attendux restore --drill -i <identity> and fix what it reports';
    // The signed record the drill writes beside the backup it restored (restore/drill-record.ts) first:
    // it holds the checks and is readable without the database.
    const rec = env.loaded ? await readNewestDrill(env.loaded) : null;
    let at: Date;
    if (rec) {
      const r = rec.record;
      if (!rec.verified)
        return fail(
          `the drill record ${rec.file} is not signed by a trusted key (altered, or from another install)`,
          fixLine,
        );
      at = new Date(r.at);
      if (!r.ok)
        return fail(
          `the last restore drill (${r.at}, backup ${r.id}) failed: ${r.failed.join(', ')}`,
          fixLine,
        );
    } else {
      // Drills from before the record existed are only in the audit log.
      if (!env.install) return skip('the database is not reachable and no drill record is in the backup dir');
      const { rows } = await env.install.admin.query<{ at: Date; outcome: string }>(
        `SELECT at, details->>'outcome' AS outcome FROM audit_log WHERE tenant_id = $1 AND action = 'restore.drill'
          ORDER BY seq DESC LIMIT 1`,
        [SYSTEM_TENANT],
      );
      const d = rows[0];
      if (!d)
        return warn('no restore drill was ever run', 'attendux restore --drill -i <identity> (monthly)');
      if (d.outcome !== 'success')
        return fail(`the last restore drill (${d.at.toISOString()}) failed`, fixLine);
      at = d.at;
    }
    const days = (env.now.getTime() - at.getTime()) / 86_400_000;
    if (days > 35)
      return warn(
        `the last restore drill passed ${days.toFixed(0)} days ago`,
        'attendux restore --drill -i <identity> (monthly)',
      );
    return pass(
      `the last restore drill passed ${at.toISOString()}${rec ? ` (backup ${rec.record.id}, ${rec.record.checks.length} checks${rec.record.audit ? ', audit chains verified' : ''}; signed record)` : ''}`,
    );
  },
};

export const backupOffsite: Check = {
  id: 'backup.offsite',
  async run(env) {
    if (!env.loaded) return needConfig;
    const st = await offsiteStatus({ loaded: env.loaded });
    if (!st.targets.length)
      return warn(
        'no off-site target: every backup is on this server only (a dead disk or a stolen server takes them too)',
        'add a target to backup.targets (see "Off-site copies" in the README), then `attendux backup sync`',
      );
    const { secrets } = await configuredTargets(env.loaded);
    const creds = await checkTargetCredentials(env.loaded, secrets);
    // A backup newer than the target's last successful copy has not reached it (copied nowhere, or lost).
    const local = (await readCatalog(env.loaded.backupDir)).backups.filter((b) => b.status === 'ok');
    const newest = local
      .map((b) => b.finishedAt ?? b.createdAt)
      .sort()
      .at(-1);
    const problems: string[] = [];
    for (const t of st.targets) {
      const c = creds.find((x) => x.target === t.name);
      if (c?.errors.length) problems.push(...c.errors);
      if (!t.ok) problems.push(`${t.name}: ${t.problem ?? 'failing'}`);
      else if (newest && t.state?.lastSuccessAt && t.state.lastSuccessAt < newest)
        problems.push(
          `${t.name}: lags: last copy ${t.state.lastSuccessAt}, newest backup ${newest}: run \`attendux backup sync\``,
        );
    }
    if (problems.length)
      return fail(
        problems.join('; '),
        'fix the target, then `attendux backup sync` (it copies what is missing)',
      );
    return pass(
      st.targets
        .map(
          (t) =>
            `${t.name} (${t.type}) ${t.state?.lastSuccessAt ? `current, last copy ${t.state.lastSuccessAt}` : 'nothing to copy yet'}`,
        )
        .join(', '),
    );
  },
};

export const backupChecks = [
  backupRecipients,
  backupIdentity,
  backupFresh,
  backupChain,
  backupDisk,
  backupDrill,
  backupOffsite,
];
