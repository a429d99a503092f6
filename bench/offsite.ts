/**
 * Off-site copy throughput and memory: a generated backup of --mb MiB (default 1024) is copied to a real
 * OpenSSH server and to s3rver on loopback, (a) by the raw clients alone (ssh2-sftp-client fastPut,
 * @aws-sdk/lib-storage Upload with the same part size), (b) by attendux's target upload alone, and (c) by
 * the real binary, `attendux backup sync --target T`, which uploads, reads the copy back to check its
 * SHA-256 against the sidecar and writes the sidecar last; (c) runs under /usr/bin/time -v for peak RSS.
 *
 *   npx tsx bench/offsite.ts [--mb 1024]
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hashFile } from '../src/core/archive/bytes.js';
import type { Sidecar } from '../src/core/archive/format.js';
import { openTarget } from '../src/core/offsite/target.js';
import { startS3, startSshd } from '../test/helpers/offsite.js';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '1024' } } });
const MB = Number(values.mb);
const BIN = new URL('../bin/attendux.js', import.meta.url).pathname;
const PART = 16;

const dir = await mkdtemp(join(tmpdir(), 'attendux-bench-offsite-'));
const backupDir = join(dir, 'data', 'backups');
await mkdir(backupDir, { recursive: true, mode: 0o700 });
const id = 'full-20261201T020000000Z';
const file = join(backupDir, `${id}.tar.age`);
console.log(`generating a ${MB} MiB backup file...`);
await new Promise<void>((resolve, reject) => {
  const out = createWriteStream(file);
  out.on('error', reject);
  const chunk = Buffer.alloc(1 << 20);
  let left = MB;
  const more = () => {
    while (left > 0) {
      left--;
      if (!out.write(randomFillSync(chunk))) return out.once('drain', more);
    }
    out.end(resolve);
  };
  more();
});
const h = await hashFile(file);
const now = new Date().toISOString();
const sidecar: Sidecar = {
  format: 'attendux-backup/1',
  id,
  kind: 'full',
  parent: null,
  chainRoot: id,
  createdAt: now,
  finishedAt: now,
  durationMs: 1,
  file: `${id}.tar.age`,
  bytes: h.bytes,
  sha256: h.sha256,
  tarBytes: h.bytes,
  snapshot: null,
  schemaVersion: null,
  databaseId: null,
  attenduxVersion: 'bench',
  contentHash: null,
  rows: 0,
  recipients: 1,
  outcome: 'success',
};
await writeFile(join(backupDir, `${id}.json`), JSON.stringify(sidecar));

const [ssh, s3] = await Promise.all([startSshd(), startS3()]);
const sftpCfg = {
  name: 'sftp',
  type: 'sftp' as const,
  host: '127.0.0.1',
  port: ssh.port,
  user: ssh.user,
  hostKeyFingerprint: ssh.hostKeyFingerprint,
  privateKeyFile: ssh.privateKeyFile,
  retries: 0,
  connectTimeoutSeconds: 10,
};
const s3Cfg = {
  name: 's3',
  type: 's3' as const,
  endpoint: s3.endpoint,
  bucket: s3.bucket,
  region: 'us-east-1',
  pathStyle: true,
  partSizeMiB: PART,
  retries: 0,
};
const creds = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
await writeFile(
  join(dir, 'attendux.json'),
  JSON.stringify({
    dataDir: 'data',
    // No database: the audit entry of the sync is skipped (it is best effort); nothing else needs one.
    database: { url: 'postgres://x@127.0.0.1:1/none', adminUrl: 'postgres://x@127.0.0.1:1/none' },
    backup: {
      recipients: ['age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq'],
      targets: [
        { ...sftpCfg, path: join(ssh.root, 'attendux') },
        { ...s3Cfg, prefix: 'attendux' },
      ],
    },
  }),
);
const key = () => Buffer.alloc(32, 1).toString('base64');
await writeFile(
  join(dir, 'attendux.secrets.json'),
  JSON.stringify({
    sessionKey: key(),
    apiKeyHmacKey: key(),
    auditPepper: key(),
    dataKeys: { k1: key() },
    activeDataKeyId: 'k1',
    backupTargets: { s3: creds },
  }),
  { mode: 0o600 },
);

const secs = async (fn: () => Promise<unknown>) => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};
const rate = (s: number) => `${(MB / s).toFixed(0).padStart(4)} MiB/s`;

/** The real binary, `backup sync --target T`, under /usr/bin/time -v: wall seconds and peak RSS. */
function syncUnderTime(target: string): { seconds: number; rssMb: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(
    '/usr/bin/time',
    [
      '-v',
      process.execPath,
      BIN,
      '--config',
      join(dir, 'attendux.json'),
      'backup',
      'sync',
      '--target',
      target,
      '--json',
    ],
    { encoding: 'utf8', env: { ...process.env, ATTENDUX_CONFIG: '' } },
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`backup sync --target ${target} failed: ${r.stdout} ${r.stderr}`);
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  return { seconds, rssMb: m ? Number(m[1]) / 1024 : NaN };
}

try {
  const openssh = spawnSync('/usr/sbin/sshd', ['-V'], { encoding: 'utf8' }).stderr.trim();
  console.log(
    `backup file: ${MB} MiB; ${openssh}; s3rver ${JSON.parse(await readFile(new URL('../node_modules/s3rver/package.json', import.meta.url), 'utf8')).version as string}`,
  );

  // SFTP
  const { default: SftpClient } = await import('ssh2-sftp-client');
  const raw = new SftpClient('bench', {
    error: () => undefined,
    end: () => undefined,
    close: () => undefined,
  });
  await raw.connect({
    host: '127.0.0.1',
    port: ssh.port,
    username: ssh.user,
    privateKey: await readFile(ssh.privateKeyFile),
  });
  await raw.mkdir(join(ssh.root, 'raw'), true);
  const sftpRaw = await secs(() => raw.fastPut(file, join(ssh.root, 'raw', 'x.tar.age')));
  await raw.end();
  const t = await openTarget({ ...sftpCfg, path: join(ssh.root, 'ours') }, {});
  const sftpOurs = await secs(() => t.putFile(file, `${id}.tar.age`, { bytes: h.bytes }));
  await t.close();
  const sftpSync = syncUnderTime('sftp');

  // S3
  const { S3Client } = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: creds,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const s3Raw = await secs(() =>
    new Upload({
      client,
      params: { Bucket: s3.bucket, Key: 'raw/x.tar.age', Body: createReadStream(file) },
      partSize: PART << 20,
      queueSize: 2,
    }).done(),
  );
  client.destroy();
  const st = await openTarget({ ...s3Cfg, prefix: 'ours' }, creds);
  const s3Ours = await secs(() => st.putFile(file, `${id}.tar.age`, { bytes: h.bytes }));
  await st.close();
  const s3Sync = syncUnderTime('s3');

  console.log(`
sftp (OpenSSH on loopback)
  raw ssh2-sftp-client fastPut        ${sftpRaw.toFixed(2)} s   ${rate(sftpRaw)}
  attendux upload (temp name, rename) ${sftpOurs.toFixed(2)} s   ${rate(sftpOurs)}   ratio ${(sftpRaw / sftpOurs).toFixed(2)}
  attendux backup sync (binary: upload + read-back SHA-256 + sidecar)
                                      ${sftpSync.seconds.toFixed(2)} s   ${rate(sftpSync.seconds)}   ratio ${(sftpRaw / sftpSync.seconds).toFixed(2)}   peak RSS ${sftpSync.rssMb.toFixed(0)} MB
s3 (s3rver on loopback, ${PART} MiB parts, 2 in flight)
  raw @aws-sdk/lib-storage Upload     ${s3Raw.toFixed(2)} s   ${rate(s3Raw)}
  attendux upload                     ${s3Ours.toFixed(2)} s   ${rate(s3Ours)}   ratio ${(s3Raw / s3Ours).toFixed(2)}
  attendux backup sync (binary: upload + read-back SHA-256 + sidecar)
                                      ${s3Sync.seconds.toFixed(2)} s   ${rate(s3Sync.seconds)}   ratio ${(s3Raw / s3Sync.seconds).toFixed(2)}   peak RSS ${s3Sync.rssMb.toFixed(0)} MB
(ratio = raw time / attendux time: 1.00 is as fast as the raw client)`);
} finally {
  await ssh.stop();
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
}
