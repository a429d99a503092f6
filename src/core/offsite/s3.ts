import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { AttenduxError } from '../../errors.js';
import type { S3Target } from './schema.js';
import type { OffsiteTarget, PutOptions, RemoteFile, TargetCredentials } from './target.js';
import type * as S3 from '@aws-sdk/client-s3';

type S3Module = typeof S3;
type ObjectLockState = { enabled: boolean; mode?: 'GOVERNANCE' | 'COMPLIANCE' };

function clientConfig(t: S3Target, creds: TargetCredentials, checksums: boolean): S3.S3ClientConfig {
  return {
    region: t.region,
    ...(t.endpoint ? { endpoint: t.endpoint } : {}),
    forcePathStyle: t.pathStyle,
    // Credentials from the secrets file; otherwise the SDK's own chain (AWS_* env, profile, instance role).
    ...(creds.accessKeyId && creds.secretAccessKey
      ? {
          credentials: {
            accessKeyId: creds.accessKeyId,
            secretAccessKey: creds.secretAccessKey,
            ...(creds.sessionToken ? { sessionToken: creds.sessionToken } : {}),
          },
        }
      : {}),
    // The SDK's default trailing CRC checksums (aws-chunked uploads) are not understood by every
    // S3-compatible service; we verify with SHA-256 after upload anyway. Object Lock uploads need a
    // checksum, so a locked bucket gets them.
    requestChecksumCalculation: checksums ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  };
}

/** The bucket's Object Lock configuration: whether uploads are locked, and in which mode. */
async function readObjectLock(s3: S3Module, client: S3.S3Client, bucket: string): Promise<ObjectLockState> {
  try {
    const r = await client.send(new s3.GetObjectLockConfigurationCommand({ Bucket: bucket }));
    const c = r.ObjectLockConfiguration;
    return c?.ObjectLockEnabled === 'Enabled'
      ? {
          enabled: true,
          mode: c.Rule?.DefaultRetention?.Mode ?? 'COMPLIANCE',
        }
      : { enabled: false };
  } catch {
    // No lock configuration (or a service without Object Lock): plain uploads.
    return { enabled: false };
  }
}

/** Every object directly under `prefix` (not in a deeper "directory"), following continuation tokens. */
async function listObjects(
  s3: S3Module,
  client: S3.S3Client,
  bucket: string,
  prefix: string,
): Promise<RemoteFile[]> {
  const out: RemoteFile[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(
      new s3.ListObjectsV2Command({
        Bucket: bucket,
        Prefix: prefix ? `${prefix}/` : undefined,
        ContinuationToken: token,
      }),
    );
    for (const o of r.Contents ?? []) {
      const name = prefix ? o.Key!.slice(prefix.length + 1) : o.Key!;
      if (!name.includes('/')) out.push({ name, bytes: o.Size ?? 0 });
    }
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/**
 * An S3-compatible bucket (AWS, Backblaze B2, Wasabi, MinIO, Cloudflare R2). An object becomes visible only
 * when its upload completes (a multipart upload that is abandoned never shows up as an object), so no
 * temporary name is needed. lib-storage's Upload streams the file in parts (partSizeMiB, 2 in flight):
 * memory stays at a few parts whatever the size.
 */
export async function openS3Target(t: S3Target, creds: TargetCredentials): Promise<OffsiteTarget> {
  // The SDK warns on stderr about future Node versions at first use: not something cron should mail.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const s3 = await import('@aws-sdk/client-s3');
  const { Upload } = await import('@aws-sdk/lib-storage');
  let lock: ObjectLockState | undefined;
  const makeClient = (checksums: boolean) => new s3.S3Client(clientConfig(t, creds, checksums));
  let client = makeClient(false);
  const prefix = t.prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  const key = (name: string) => (prefix ? posix.join(prefix, name) : name);
  const objectLock = async () => {
    if (lock) return lock;
    lock = await readObjectLock(s3, client, t.bucket);
    if (lock.enabled) client = makeClient(true);
    return lock;
  };
  const lockParams = async (retainUntil?: Date) => {
    if (!retainUntil) return {};
    const l = await objectLock();
    return l.enabled ? { ObjectLockMode: l.mode, ObjectLockRetainUntilDate: retainUntil } : {};
  };
  return {
    name: t.name,
    type: 's3',
    url: `s3://${t.bucket}/${prefix}${t.endpoint ? ` at ${t.endpoint}` : ''}`,
    list(): Promise<RemoteFile[]> {
      return listObjects(s3, client, t.bucket, prefix);
    },
    async putFile(localPath: string, name: string, opts: PutOptions): Promise<void> {
      const extra = await lockParams(opts.retainUntil);
      const up = new Upload({
        client,
        params: {
          Bucket: t.bucket,
          Key: key(name),
          Body: createReadStream(localPath, { highWaterMark: 1 << 20 }),
          ContentType: 'application/octet-stream',
          ...(t.storageClass ? { StorageClass: t.storageClass as never } : {}),
          ...extra,
        },
        partSize: t.partSizeMiB * 1024 * 1024,
        queueSize: 2,
        // A failed multipart upload is aborted, so no half-written parts are left to pay for.
        leavePartsOnError: false,
      });
      up.on('httpUploadProgress', (p) => {
        if (p.loaded !== undefined) opts.onBytes?.(p.loaded);
      });
      await up.done();
    },
    async putBytes(name: string, data: Buffer, opts: { retainUntil?: Date } = {}): Promise<void> {
      await client.send(
        new s3.PutObjectCommand({
          Bucket: t.bucket,
          Key: key(name),
          Body: data,
          ContentType: 'application/json',
          ...(t.storageClass ? { StorageClass: t.storageClass as never } : {}),
          ...(await lockParams(opts.retainUntil)),
        }),
      );
    },
    async read(name: string): Promise<Readable> {
      try {
        const r = await client.send(new s3.GetObjectCommand({ Bucket: t.bucket, Key: key(name) }));
        return r.Body as Readable;
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchKey')
          throw new AttenduxError('NOT_FOUND', `target ${t.name}: ${name} does not exist`);
        throw err;
      }
    },
    async remove(name: string): Promise<void> {
      // In a bucket with Object Lock (always versioned) this adds a delete marker: the locked version stays
      // until its retain-until date, which is the point.
      await client.send(new s3.DeleteObjectCommand({ Bucket: t.bucket, Key: key(name) }));
    },
    objectLock,
    close(): Promise<void> {
      client.destroy();
      return Promise.resolve();
    },
  };
}
