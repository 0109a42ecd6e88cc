import { open, rename, unlink, mkdir } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes a file so that a crash at any moment leaves either the old or the new content, never
 * a mix: write a temp file beside it, fsync it, rename over the target, fsync the directory.
 *
 * With `previousPath`, the old content is first renamed there (kept as the last good copy). A
 * crash between the two renames leaves no file at `path` and the old content at previousPath:
 * readers that find `path` missing must take previousPath.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { previousPath?: string } = {}): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'w', 0o640);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (options.previousPath !== undefined) {
      await rename(path, options.previousPath).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      });
    }
    await rename(temp, path);
  } catch (e: unknown) {
    await unlink(temp).catch(() => undefined);
    throw e;
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
