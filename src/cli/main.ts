import { Command, CommanderError, Option } from 'commander';
import { AttenduxError, isAttenduxError } from '../errors.js';
import { VERSION } from '../version.js';
import { registerCommands } from './commands/index.js';
import { installSignalHandlers } from './lifecycle.js';
import { paintFor } from './color.js';
import { stopStartedClusters } from '../db/started-clusters.js';

export function buildProgram(): Command {
  const program = new Command('attendux')
    .description('Self-hosted multi-tenant attendance server and its operations toolkit')
    .version(VERSION, '-V, --version')
    .addOption(
      new Option(
        '-c, --config <file>',
        'config file (else $ATTENDUX_CONFIG, ./attendux.json, /etc/attendux/attendux.json)',
      ),
    )
    .option('--json', 'print one JSON result object on stdout')
    .option('-q, --quiet', 'print nothing on success (for cron)')
    .option('--no-color', 'no colours in output')
    .option('--debug', 'print stack traces of errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerCommands(program);
  // Every subcommand inherits the override so that parse errors reach main() instead of exiting there.
  const walk = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(walk);
  };
  walk(program);
  return program;
}

function toAttenduxError(err: unknown): AttenduxError {
  if (isAttenduxError(err)) return err;
  const e = err as { code?: string; message?: string; severity?: string };
  if (e && typeof e === 'object' && typeof e.severity === 'string' && typeof e.code === 'string') {
    return new AttenduxError('DB_ERROR', `PostgreSQL: ${e.message ?? 'error'}`, { cause: err });
  }
  if (e && typeof e === 'object' && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) {
    return new AttenduxError('IO_ERROR', e.message ?? e.code, { cause: err });
  }
  return new AttenduxError('INTERNAL', `internal error: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    hint: 'run again with --debug and report it',
  });
}

/**
 * The only place that decides the exit code: every command throws, this prints one clear line and sets it.
 * An embedded cluster this process started is stopped before main() returns, whatever happened; signals
 * are handled in lifecycle.ts.
 */
export async function main(argv: string[]): Promise<void> {
  installSignalHandlers();
  let code = 1;
  try {
    code = await run(argv);
  } finally {
    try {
      await stopStartedClusters();
    } catch (err) {
      process.stderr.write(`attendux: could not stop embedded PostgreSQL: ${(err as Error).message}\n`);
      code = code || 1;
    }
    process.exitCode = code;
  }
}

async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  const debug = argv.includes('--debug');
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version "errors" are successes; every other parse error is a usage error.
      if (json && err.exitCode !== 0) {
        process.stdout.write(JSON.stringify({ error: { code: 'USAGE', message: err.message } }) + '\n');
      }
      return err.exitCode === 0 ? 0 : 2;
    }
    const e = toAttenduxError(err);
    // argv, not the parsed options: a parse error can come before commander has read --no-color.
    const paint = paintFor(process.stderr, { color: !argv.includes('--no-color') });
    process.stderr.write(`${paint.red(`attendux: ${e.message}`)}\n`);
    if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
    if (debug) {
      process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
      let cause: unknown = (err as Error)?.cause;
      while (cause) {
        process.stderr.write(
          `caused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : JSON.stringify(cause)}
`,
        );
        cause = (cause as Error).cause;
      }
    }
    if (json && !e.resultPrinted) {
      process.stdout.write(
        JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint, ...e.details } }) + '\n',
      );
    }
    return e.exitCode;
  }
}
