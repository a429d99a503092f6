import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { generateSigningKey, publicKeyOf } from '../../src/crypto/signing.js';
import { identityKeyLine } from '../../src/core/backup/signature.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditKeyFor, type TestDatabase } from './db.js';

export interface TestInstall {
  dir: string;
  configPath: string;
  secretsPath: string;
  dataDir: string;
  backupDir: string;
  identityFile: string;
  recipient: string;
  identity: string;
  cleanup(): Promise<void>;
}

const key = () => randomBytes(32).toString('base64');

/** An age key pair made by Debian's age-keygen, so the tests exercise the real CLI's key format. */
export function ageKeygen(file: string): { identity: string; recipient: string } {
  execFileSync('age-keygen', ['-o', file], { stdio: 'pipe' });
  const text = execFileSync('cat', [file], { encoding: 'utf8' });
  const identity = text.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  const recipient = /public key: (age1\S+)/.exec(text)![1]!;
  return { identity, recipient };
}

/** A config + 0600 secrets file in a temp dir, pointing at a test database, with one backup recipient. */
export async function makeInstall(
  db: TestDatabase,
  opts: { recipients?: boolean; backup?: Record<string, unknown> } = {},
): Promise<TestInstall> {
  const dir = await mkdtemp(join(tmpdir(), 'attendux-backup-test-'));
  const identityFile = join(dir, 'identity.txt');
  const { identity, recipient } = ageKeygen(identityFile);
  // As `init` does: the install signing key's public half is kept in the identity file.
  const signingKey = generateSigningKey();
  await appendFile(identityFile, identityKeyLine(publicKeyOf(signingKey)));
  const configPath = join(dir, 'attendux.json');
  const secretsPath = join(dir, 'attendux.secrets.json');
  const config = {
    dataDir: 'data',
    database: { url: db.appUrl, adminUrl: db.adminUrl, appRole: db.appRole },
    backup: { recipients: opts.recipients === false ? [] : [recipient], ...(opts.backup ?? {}) },
  };
  await writeFile(configPath, JSON.stringify(config, null, 2) + '\n', { mode: 0o644 });
  await writeFile(
    secretsPath,
    JSON.stringify({
      sessionKey: key(),
      apiKeyHmacKey: key(),
      auditPepper: key(),
      auditKey: auditKeyFor(db),
      dataKeys: { k1: key() },
      activeDataKeyId: 'k1',
      signingKey,
    }) + '\n',
    { mode: 0o600 },
  );
  return {
    dir,
    configPath,
    secretsPath,
    dataDir: join(dir, 'data'),
    backupDir: join(dir, 'data', 'backups'),
    identityFile,
    recipient,
    identity,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

// Tests poke at arbitrary config keys, including invalid ones; the loader validates what they write.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type LooseConfig = Record<string, any>;

export async function patchConfig(inst: TestInstall, fn: (c: LooseConfig) => void): Promise<void> {
  const c = JSON.parse(await readFile(inst.configPath, 'utf8')) as LooseConfig;
  fn(c);
  await writeFile(inst.configPath, JSON.stringify(c, null, 2) + '\n');
}

/** Content fingerprint of every application table (order-independent), to compare two databases. */
export const TABLES_FINGERPRINT_SQL = `
  SELECT t AS name,
         (xpath('/row/c/text()',
            query_to_xml(format('SELECT count(*) || '':'' || coalesce(md5(string_agg(x::text, '','' ORDER BY x::text)), '''') AS c FROM %I x', t),
                         false, true, '')))[1]::text AS fp
    FROM attendux_backup_tables() t ORDER BY 1`;
