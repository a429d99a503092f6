import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink, mkdir, stat } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/**
 * Write a file so that a reader sees either the old content or the new, never a mix: write a sibling
 * `.part`, fsync it, rename over the target, fsync the directory so the rename itself survives a crash.
 * The mode of an existing target is kept unless one is given.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode?: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  let finalMode = mode;
  if (finalMode === undefined) {
    finalMode = await stat(path).then(
      (s) => s.mode & 0o777,
      () => 0o644,
    );
  }
  const part = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.part`);
  const fh = await open(part, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, finalMode);
  try {
    await fh.writeFile(data);
    await fh.chmod(finalMode);
    await fh.sync();
  } catch (err) {
    await fh.close();
    // Tidying up after a failed write: the write's error is the one to report.
    await unlink(part).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(part, path);
  } catch (err) {
    await unlink(part).catch(() => undefined); // as above: the rename's error is reported
    throw err;
  }
  await fsyncDir(dirname(path));
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function pathExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
