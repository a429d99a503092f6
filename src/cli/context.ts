import type { Command } from 'commander';
import type { ChalkInstance } from 'chalk';
import { AttenduxError } from '../errors.js';
import { paintFor } from './color.js';

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  quiet?: boolean;
  color?: boolean;
  debug?: boolean;
}

/**
 * What every command gets: the global flags and the one way to print. Results go to stdout (a JSON object with
 * --json, text otherwise); progress and notes go to stderr and are silent with --quiet or --json, so that cron
 * mails nothing on success.
 */
export class CliContext {
  readonly opts: GlobalOptions;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;

  constructor(opts: GlobalOptions, stdout = process.stdout, stderr = process.stderr) {
    this.opts = opts;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  get json(): boolean {
    return this.opts.json === true;
  }

  get quiet(): boolean {
    return this.opts.quiet === true || this.json;
  }

  get interactive(): boolean {
    return process.stdin.isTTY === true && process.stdout.isTTY === true;
  }

  /** Progress lines are for people watching a terminal: never in cron, never with --quiet or --json. */
  get showProgress(): boolean {
    return !this.quiet && this.stderr.isTTY === true;
  }

  /** Colours for the result lines on stdout (none with --no-color, NO_COLOR or into a pipe). */
  get paint(): ChalkInstance {
    return (this.#paint ??= paintFor(this.stdout, this.opts));
  }
  #paint: ChalkInstance | undefined;

  get location() {
    return { configPath: this.opts.config };
  }

  /** Print the command's result: `data` as JSON with --json, else the human lines (unless --quiet). */
  result(data: unknown, human: () => string | string[] | undefined): void {
    if (this.json) {
      this.stdout.write(JSON.stringify(data, null, 2) + '\n');
      return;
    }
    if (this.opts.quiet) return;
    const text = human();
    if (text === undefined) return;
    const lines = Array.isArray(text) ? text : [text];
    if (lines.length) this.stdout.write(lines.join('\n') + '\n');
  }

  /** Something the user must see even with --quiet (a generated password, a warning). */
  important(text: string): void {
    this.stderr.write(text + '\n');
  }

  note(text: string): void {
    if (!this.quiet) this.stderr.write(text + '\n');
  }

  progress(text: string): void {
    if (this.showProgress) this.stderr.write(`\r\x1b[2K${text}`);
  }

  progressDone(): void {
    if (this.showProgress) this.stderr.write('\r\x1b[2K');
  }

  /**
   * Ask before destroying anything. --yes answers for the user; with no terminal to ask on, refuse rather
   * than guess.
   */
  async confirm(question: string, yes: boolean | undefined): Promise<void> {
    if (yes) return;
    if (!this.interactive) {
      throw new AttenduxError(
        'CONFIRMATION_REQUIRED',
        `${question} (refusing without --yes: no terminal to confirm on)`,
        {
          hint: 'pass --yes to confirm, or --dry-run to preview',
        },
      );
    }
    const { confirm } = await import('@inquirer/prompts');
    const ok = await confirm({ message: question, default: false });
    if (!ok) throw new AttenduxError('ABORTED', 'aborted; nothing was changed');
  }
}

export function contextOf(cmd: Command): CliContext {
  return new CliContext(cmd.optsWithGlobals<GlobalOptions>());
}

/** Commander option parsers that turn bad values into usage errors (exit 2). */
export function intOption(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new AttenduxError(
        'USAGE',
        `${name} must be an integer between ${min} and ${max}, got "${value}"`,
      );
    }
    return n;
  };
}

export function table(rows: readonly object[], columns: string[]): string[] {
  if (!rows.length) return ['(none)'];
  const cell = (v: unknown): string =>
    v instanceof Date
      ? v.toISOString()
      : v === null || v === undefined
        ? '-'
        : typeof v === 'string'
          ? v
          : JSON.stringify(v);
  const get = (r: object, c: string) => (r as Record<string, unknown>)[c];
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(get(r, c)).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((c) => c.toUpperCase())),
    ...rows.map((r) => line(columns.map((c) => cell(get(r, c))))),
  ];
}
