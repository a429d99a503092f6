import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { databaseOf, redactUrl, rewriteDbUrl } from '../../src/lib/db-url.js';
import { isConnectionLost } from '../../src/lib/pg-errors.js';
import { processAlive } from '../../src/lib/pid.js';
import { isUuid } from '../../src/lib/uuid.js';

describe('database URLs', () => {
  const base = 'postgres://postgres:pw@127.0.0.1:5432/postgres?sslmode=disable';

  it('rewrites the database, user and password and keeps the rest', () => {
    const u = rewriteDbUrl(base, { database: 'attendux', user: 'attendux_owner', password: '' });
    expect(u).toBe('postgres://attendux_owner@127.0.0.1:5432/attendux?sslmode=disable');
    expect(rewriteDbUrl(base, {})).toBe(base);
  });

  it('encodes what a URL cannot hold, so that the driver reads the same value back', () => {
    const u = rewriteDbUrl(base, { password: 'a%b@c/d:e', database: 'my db' });
    expect(decodeURIComponent(new URL(u).password)).toBe('a%b@c/d:e');
    expect(databaseOf(u)).toBe('my db');
  });

  it('masks the password in messages', () => {
    expect(redactUrl(base)).toBe('postgres://postgres:***@127.0.0.1:5432/postgres?sslmode=disable');
    expect(redactUrl('not a url')).toBe('(unparseable database URL)');
  });
});

describe('connection lost', () => {
  it('recognises a dropped or refused connection by code or by node-postgres message', () => {
    expect(isConnectionLost({ code: '57P01' })).toBe(true);
    expect(isConnectionLost({ code: 'ECONNREFUSED' })).toBe(true);
    expect(isConnectionLost(new Error('Connection terminated unexpectedly'))).toBe(true);
  });

  it('does not take a refused query for a lost connection', () => {
    expect(isConnectionLost({ code: '23505', message: 'duplicate key' })).toBe(false);
    expect(isConnectionLost(new Error('syntax error at or near "SELEC"'))).toBe(false);
    expect(isConnectionLost(undefined)).toBe(false);
  });
});

describe('process alive', () => {
  it('is true for this process and false for one that has exited', async () => {
    expect(processAlive(process.pid)).toBe(true);
    const child = spawn(process.execPath, ['-e', '']);
    const pid = child.pid!;
    await once(child, 'exit');
    expect(processAlive(pid)).toBe(false);
  });
});

describe('uuid', () => {
  it('accepts a uuid in either case and nothing else', () => {
    expect(isUuid('0b7e7dee-87c6-4c2b-9e7a-4f2d5c3b1a90')).toBe(true);
    expect(isUuid('0B7E7DEE-87C6-4C2B-9E7A-4F2D5C3B1A90')).toBe(true);
    expect(isUuid('0b7e7dee-87c6-4c2b-9e7a-4f2d5c3b1a9')).toBe(false);
    expect(isUuid('acme')).toBe(false);
  });
});
