import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

/** Every entry under `root` as a sortable line: paths, sizes, content hashes, exec bits, symlink targets. */
export async function describeTree(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const full = join(dir, name);
      const path = relative(root, full).split(sep).join('/');
      const stats = await lstat(full);
      if (stats.isSymbolicLink()) found.push(`link ${path} -> ${await readlink(full)}`);
      else if (stats.isDirectory()) {
        found.push(`dir  ${path}`);
        await walk(full);
      } else {
        const exec = stats.mode & 0o100 ? 'x' : '-';
        const hash = createHash('sha256')
          .update(await readFile(full))
          .digest('hex');
        found.push(`file ${path} ${exec} ${stats.size} ${hash}`);
      }
    }
  };
  await walk(root);
  return found.sort();
}
