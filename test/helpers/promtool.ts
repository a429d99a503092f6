import { execa } from 'execa';

/**
 * `promtool check metrics` from Debian's prometheus package (.ci/run installs it): exit 0 and no output
 * when the text is valid exposition format and passes its lint rules.
 */
export async function promtoolCheck(text: string): Promise<{ exitCode: number; output: string }> {
  const r = await execa('promtool', ['check', 'metrics'], { input: text, reject: false, all: true });
  if (r.exitCode === undefined || (r.failed && /ENOENT/.test(String(r.message))))
    throw new Error('promtool is not installed: apt-get install prometheus (see .ci/run)');
  return { exitCode: r.exitCode, output: String(r.all ?? '') };
}
