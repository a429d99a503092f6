import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Issue 11, "Errors": every thrown error is an AttenduxError, and a swallowed error is either logged with
 * its reason (warnSwallowed) or justified in a comment. This scans src/ so that the rule holds for code
 * written later, not only for the code swept once.
 */
const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const hasComment = (line: string | undefined): boolean => line !== undefined && /\/\/|\/\*|^\s*\*/.test(line);

/** Lines matching `pattern` that have neither a comment on the line or the line above nor warnSwallowed. */
export function unjustified(text: string, pattern: RegExp): number[] {
  const lines = text.split('\n');
  const out: number[] = [];
  lines.forEach((line, i) => {
    if (!pattern.test(line)) return;
    if (hasComment(line) || /warnSwallowed\(/.test(line)) return;
    // One comment may cover a run of adjacent similar lines (closing several clients in a finally).
    let j = i - 1;
    while (j >= 0 && pattern.test(lines[j]!) && !hasComment(lines[j])) j--;
    if (j >= 0 && hasComment(lines[j])) return;
    out.push(i + 1);
  });
  return out;
}

/** An error-discarding `.catch(() => …)` whose handler does nothing but return a fallback. */
const SWALLOW_CATCH = /\.catch\(\(\) =>/;
/** A `catch {` without a binding: the error is dropped by construction. */
const BARE_CATCH = /\bcatch \{/;
const PLAIN_ERROR = /\bnew (Range|Type)?Error\(/;

function violations(pattern: RegExp, extra?: (lines: string[], lineNo: number) => boolean): string[] {
  return sourceFiles(SRC).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n');
    return unjustified(text, pattern)
      .filter((n) => !extra || !extra(lines, n))
      .map((n) => `${relative(SRC, file)}:${n}: ${lines[n - 1]!.trim()}`);
  });
}

/** A bare catch whose first statement warns or (re)throws is loud, not swallowed. */
const loudBody = (lines: string[], n: number): boolean => {
  const next = lines[n] ?? '';
  return /warnSwallowed\(|\bthrow\b/.test(next) || hasComment(next);
};

describe('no silently swallowed errors (issue 11)', () => {
  it('the scanner flags an uncommented swallow and accepts a commented one', () => {
    expect(unjustified('x;\nawait a.end().catch(() => undefined);\n', SWALLOW_CATCH)).toEqual([2]);
    expect(
      unjustified('// closing a dead client\nawait a.end().catch(() => undefined);\n', SWALLOW_CATCH),
    ).toEqual([]);
    expect(unjustified('await a.end().catch(() => undefined); // why\n', SWALLOW_CATCH)).toEqual([]);
    expect(
      unjustified(
        '// closing both\nawait a.end().catch(() => {});\nawait b.end().catch(() => {});\n',
        SWALLOW_CATCH,
      ),
    ).toEqual([]);
    expect(unjustified('try {\n} catch {\n  return;\n}\n', BARE_CATCH)).toEqual([2]);
    expect(unjustified('throw new Error("x");\n', PLAIN_ERROR)).toEqual([1]);
  });

  it('every error-discarding .catch(() => …) in src/ is justified in a comment or logged', () => {
    expect(violations(SWALLOW_CATCH)).toEqual([]);
  });

  it('every bare `catch {` in src/ is justified in a comment, logged or rethrown', () => {
    expect(violations(BARE_CATCH, loudBody)).toEqual([]);
  });

  it('every plain `new Error(` in src/ says in a comment why it is not an AttenduxError', () => {
    expect(violations(PLAIN_ERROR)).toEqual([]);
  });
});
