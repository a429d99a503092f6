import type { Command } from 'commander';
import { contextOf } from '../context.js';
import { statusColor } from '../color.js';
import { AttenduxError } from '../../errors.js';
import { hasCommandOf } from './schedule.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('security and health checks of the whole install (pass/warn/fail/skip, one fix line each)')
    .option('--fix', 'apply the safe fixes (file modes, ownership) after showing them')
    .action(async (flags: { fix?: boolean }, cmd: Command) => {
      const ctx = contextOf(cmd);
      const { doctor } = await import('../../core/doctor/index.js');
      const r = await doctor(ctx.location, {
        fix: flags.fix,
        onFix: (id, fix) => ctx.important(`fixing ${id}: ${fix}`),
        hasCommand: hasCommandOf(cmd),
      });
      const tag = { pass: 'PASS', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' } as const;
      ctx.result(r, () => [
        ...r.checks.flatMap((c) => [
          `${statusColor(ctx.paint, c.status, tag[c.status])}  ${c.id.padEnd(28)} ${c.message}`,
          ...(c.fix && c.status !== 'pass' ? [`      fix: ${c.fix}`] : []),
        ]),
        r.ok
          ? statusColor(ctx.paint, 'pass', 'ok: no check failed')
          : statusColor(
              ctx.paint,
              'fail',
              `${r.checks.filter((c) => c.status === 'fail').length} check(s) FAILED`,
            ),
      ]);
      if (!r.ok)
        throw new AttenduxError(
          'DOCTOR_FAILED',
          `${r.checks
            .filter((c) => c.status === 'fail')
            .map((c) => c.id)
            .join(', ')} failed`,
          {
            hint: 'each failed check has a fix line; `attendux doctor --fix` applies the safe ones',
            resultPrinted: true,
          },
        );
    });
}
