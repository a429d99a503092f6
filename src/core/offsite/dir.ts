import { constants, createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fsyncDir } from '../../lib/fs.js';
import type { DirTarget } from './schema.js';
import { isTempName, tempName, type OffsiteTarget, type PutOptions, type RemoteFile } from './target.js';

async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A mounted directory (NFS, USB disk): a copy under a temporary name, fsynced, renamed. */
export function openDirTarget(t: DirTarget): OffsiteTarget {
  const root = t.path;
  const ensure = () => mkdir(root, { recursive: true, mode: 0o700 });
  const finish = async (tmp: string, name: string) => {
    await fsyncFile(tmp);
    await rename(tmp, join(root, name));
    await fsyncDir(root);
  };
  return {
    name: t.name,
    type: 'dir',
    url: `file://${root}`,
    async list(): Promise<RemoteFile[]> {
      const names = await readdir(root).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [] as string[];
        throw err;
      });
      const out: RemoteFile[] = [];
      for (const n of names) {
        // a file that vanished while listing is not listed
        const st = await stat(join(root, n)).catch(() => null);
        if (st?.isFile()) out.push({ name: n, bytes: st.size });
      }
      return out;
    },
    async putFile(localPath: string, name: string, opts: PutOptions): Promise<void> {
      await ensure();
      const tmp = join(root, tempName(name));
      let n = 0;
      try {
        await pipeline(
          createReadStream(localPath, { highWaterMark: 1 << 20 }),
          new Transform({
            transform(c: Buffer, _e, cb) {
              n += c.length;
              opts.onBytes?.(n);
              cb(null, c);
            },
          }),
          createWriteStream(tmp, { mode: 0o600, flags: 'wx' }),
        );
        await finish(tmp, name);
      } catch (err) {
        await unlink(tmp).catch(() => undefined); // removing the temp file: its error is rethrown
        throw err;
      }
    },
    async putBytes(name: string, data: Buffer): Promise<void> {
      await ensure();
      const tmp = join(root, tempName(name));
      try {
        const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
        try {
          await fh.writeFile(data);
        } finally {
          await fh.close();
        }
        await finish(tmp, name);
      } catch (err) {
        await unlink(tmp).catch(() => undefined); // removing the temp file: its error is rethrown
        throw err;
      }
    },
    read(name: string): Promise<Readable> {
      const s = createReadStream(join(root, name), { highWaterMark: 1 << 20 });
      // Surface ENOENT here, not on the first read.
      return new Promise((res, rej) => {
        s.once('open', () => res(s));
        s.once('error', rej);
      });
    },
    async remove(name: string): Promise<void> {
      await rm(join(root, name), { force: true });
    },
    async leftovers(): Promise<string[]> {
      return (await this.list()).map((f: RemoteFile) => f.name).filter(isTempName);
    },
    async close(): Promise<void> {},
  };
}
