import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, inject } from 'vitest';
import { dropInstall } from '../helpers/db.js';
import { BIN } from '../helpers/cli.js';

const { superuserUrl } = inject('pg');
const database = `attendux_tty_${randomBytes(3).toString('hex')}`;

afterAll(() => dropInstall(superuserUrl, database));

/**
 * Drive a command through a real pseudo-terminal (util-linux `script`), answering each prompt once its text
 * has appeared, as a person at a terminal would.
 */
async function interact(command: string, steps: [prompt: string, answer: string][], timeoutMs = 60_000) {
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, TERM: 'dumb' },
  });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  child.stderr.on('data', (d: Buffer) => (screen += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  for (const [prompt, answer] of steps) {
    for (;;) {
      const at = screen.indexOf(prompt, seen);
      if (at >= 0) {
        seen = at + prompt.length;
        break;
      }
      if (Date.now() > deadline) {
        child.kill();
        throw new Error(`prompt "${prompt}" never appeared; screen:\n${screen}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 100));
    child.stdin.write(answer);
  }
  const code = await exited;
  return { code, screen };
}

describe('attendux init at a terminal', () => {
  it('asks each question and provisions with the answers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'attendux-tty-'));
    const config = join(dir, 'attendux.json');
    const { code, screen } = await interact(
      `node ${BIN} init --config-out ${config} --database-name ${database}`,
      [
        ['Data directory', `${join(dir, 'data')}\r`],
        ['PostgreSQL', '\x1b[B\r'],
        ['Superuser URL', `\x15${superuserUrl}\r`],
        ['First company slug', 'tty-co\r'],
        ['Company name', '\r'],
        ['Owner email', 'owner@tty.example\r'],
        ['Owner password', '\r'],
      ],
    );
    expect(code, screen).toBe(0);
    expect(screen).toMatch(/Owner password \(shown once\): [A-Za-z0-9]{24}/);
    const written = JSON.parse(await readFile(config, 'utf8'));
    expect(written.database.adminUrl).toContain(`/${database}`);
    expect(written.dataDir).toBe('data');
  });
});
