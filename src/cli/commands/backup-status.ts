import type { Command } from 'commander';
import { contextOf } from '../context.js';
import { AttenduxError } from '../../errors.js';

// `backup status`, registered by backup.ts: kept apart so that backup.ts stays under 400 lines.

/** backup status. */
export function registerStatus(backup: Command): void {
  backup
    .command('status')
    .description('age of the newest backup of each kind against its schedule; exit 1 when stale or failing')
    .option('--prometheus <file>', 'also write node_exporter textfile metrics to this file')
    .action(async (flags: { prometheus?: string }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { backupStatusWithTargets } = await import('../../core/backup/status.js');
      const st = await backupStatusWithTargets({ ...ctx.location, prometheus: flags.prometheus });
      const offsite = st.offsite;
      ctx.result(st, () => [
        ...st.kinds.map(
          (k) =>
            `${k.ok ? 'ok   ' : 'STALE'} ${k.kind.padEnd(11)} ${k.newest ? `${k.newest.id} (${k.ageHours!.toFixed(1)} h ago)` : 'never'}${k.problem ? `: ${k.problem}` : k.audit ? `; ${k.audit.line}` : ''}`,
        ),
        ...st.jobs.map(
          (j) => `job ${j.job}: ${j.outcome} at ${j.startedAt}${j.error ? ` (${j.error.message})` : ''}`,
        ),
        ...offsite.targets.map(
          (t) =>
            `${t.ok ? 'ok   ' : 'FAIL '} target ${t.name} (${t.type})${t.state?.lastSuccessAt ? `: last copy ${t.state.lastSuccessAt}` : ''}${t.problem ? `: ${t.problem}` : ''}`,
        ),
        ...st.problems.map((p) => `BAD   ${p.id} (${p.file}): ${p.problem}`),
        st.drill
          ? `${st.drill.ok && st.drill.verified ? 'ok   ' : 'FAIL '} last drill ${st.drill.at} of ${st.drill.id}: ${
              !st.drill.verified
                ? 'the record is not signed by a trusted key'
                : st.drill.ok
                  ? `passed${st.drill.audit ? ` (audit: ${st.drill.audit.detail})` : ''}`
                  : `failed: ${st.drill.failed.join(', ')}`
            }`
          : 'no restore drill recorded (attendux restore --drill)',
      ]);
      if (!st.ok) {
        const bad = st.kinds.filter((k) => !k.ok);
        const badTargets = offsite.targets.filter((t) => !t.ok);
        if (!bad.length && !st.problems.length)
          throw new AttenduxError(
            'OFFSITE_FAILED',
            `off-site copies need attention: ${badTargets.map((t) => `${t.name}: ${t.problem ?? ''}`).join('; ')}`,
            { hint: 'fix the target, then run `attendux backup sync`', resultPrinted: true },
          );
        throw new AttenduxError(
          'BACKUP_STALE',
          `backups need attention: ${[
            ...bad.map((k) => `${k.kind} ${k.problem ?? ''}`),
            ...st.problems.map((p) => `${p.file}: ${p.problem}`),
          ].join('; ')}`,
          {
            hint: 'see `attendux backup list`; run the missing backup or fix the failing run',
            resultPrinted: true,
          },
        );
      }
    });
}
