import { describe, expect, it } from 'vitest';
import { colorLevel, paintFor } from '../../src/cli/color.js';

const tty = { isTTY: true };
const pipe = { isTTY: false };

describe('colour level', () => {
  it('colours a terminal and not a pipe by default', () => {
    expect(colorLevel(tty, {}, {})).toBe(1);
    expect(colorLevel(pipe, {}, {})).toBe(0);
    expect(colorLevel(tty, {}, { TERM: 'dumb' })).toBe(0);
  });

  it('honours NO_COLOR (any non-empty value) and --no-color on a terminal', () => {
    expect(colorLevel(tty, {}, { NO_COLOR: '1' })).toBe(0);
    expect(colorLevel(tty, {}, { NO_COLOR: '' })).toBe(1);
    expect(colorLevel(tty, { color: false }, {})).toBe(0);
  });

  it('honours FORCE_COLOR without a terminal, and --no-color over it', () => {
    expect(colorLevel(pipe, {}, { FORCE_COLOR: '1' })).toBe(1);
    expect(colorLevel(pipe, {}, { FORCE_COLOR: '3' })).toBe(3);
    expect(colorLevel(pipe, {}, { FORCE_COLOR: '' })).toBe(1);
    expect(colorLevel(tty, {}, { FORCE_COLOR: '0' })).toBe(0);
    expect(colorLevel(tty, {}, { FORCE_COLOR: 'false' })).toBe(0);
    expect(colorLevel(pipe, { color: false }, { FORCE_COLOR: '1' })).toBe(0);
  });

  it('paints with escape codes only when the level allows', () => {
    expect(paintFor(pipe, {}, {}).red('x')).toBe('x');
    expect(paintFor(tty, {}, {}).red('x')).toBe('\x1b[31mx\x1b[39m');
  });
});
