/**
 * What changed between two commits' trees, as `git diff-tree -r -t -z --raw --no-renames` says it, with
 * the new content of every file and symlink that was added or changed (from `git cat-file --batch`).
 * Parsing only: GitMirror.treeChanges runs the commands.
 */
import { isUtf8 } from 'node:buffer';

/** A: added, D: deleted, M: modified (content or executable bit), T: type changed (file, symlink, submodule). */
export type TreeChangeStatus = 'A' | 'D' | 'M' | 'T';

export interface TreeChange {
  status: TreeChangeStatus;
  /** `/`-separated path in the tree. */
  path: string;
  /** Git modes (`100644`, `100755`, `120000`, `040000`, `160000`); `000000` for the side that does not exist. */
  oldMode: string;
  newMode: string;
  /** Object id on the new side (all zeros for a deletion). */
  newId: string;
  /** Content of the new blob, for files and symlinks that were added or changed. */
  data?: Buffer;
}

/** The diff cannot be described as tree changes a snapshot can take (a name that is not UTF-8, a copy...). */
export class TreeChangesUnreadable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TreeChangesUnreadable';
  }
}

const MODE = /^[0-7]{6}$/;
const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
const STATUSES = new Set(['A', 'D', 'M', 'T']);

/** Whether a mode on the new side carries blob content a snapshot holds (a file or a symlink). */
export function hasBlobContent(mode: string): boolean {
  return mode === '100644' || mode === '100755' || mode === '120000';
}

/**
 * Parses `git diff-tree -r -t -z --raw --no-renames --no-abbrev` output: records
 * `:<old mode> <new mode> <old id> <new id> <status>\0<path>\0`.
 */
export function parseRawTreeDiff(raw: Buffer): TreeChange[] {
  const changes: TreeChange[] = [];
  let at = 0;
  while (at < raw.length) {
    const metaEnd = raw.indexOf(0, at);
    const pathEnd = metaEnd < 0 ? -1 : raw.indexOf(0, metaEnd + 1);
    if (metaEnd < 0 || pathEnd < 0) throw new TreeChangesUnreadable('diff-tree output ends mid-record');
    const meta = raw.toString('latin1', at, metaEnd);
    const pathBytes = raw.subarray(metaEnd + 1, pathEnd);
    at = pathEnd + 1;
    const [oldMode, newMode, , newId, status] = meta.startsWith(':') ? meta.slice(1).split(' ') : [];
    if (
      !oldMode ||
      !newMode ||
      !MODE.test(oldMode) ||
      !MODE.test(newMode) ||
      !newId ||
      !OBJECT_ID.test(newId) ||
      !status ||
      !STATUSES.has(status)
    ) {
      throw new TreeChangesUnreadable(`unexpected diff-tree record ${JSON.stringify(meta)}`);
    }
    if (!isUtf8(pathBytes)) throw new TreeChangesUnreadable('a changed path is not UTF-8');
    changes.push({
      status: status as TreeChangeStatus,
      path: pathBytes.toString('utf8'),
      oldMode,
      newMode,
      newId,
    });
  }
  return changes;
}

/**
 * Reads `git cat-file --batch` output for the ids asked for, in order: `<id> <type> <size>\n<content>\n`
 * each, blobs, after the commit `commitId` when one was asked for first. Anything else (a missing object,
 * another type) is an error.
 */
export function parseCatFileBatch(
  output: Buffer,
  ids: readonly string[],
  commitId?: string,
): Map<string, Buffer> {
  const contents = new Map<string, Buffer>();
  const expected =
    commitId === undefined
      ? ids.map((id) => [id, 'blob'])
      : [[commitId, 'commit'], ...ids.map((id) => [id, 'blob'])];
  let at = 0;
  for (const [id, expectedType] of expected as [string, string][]) {
    const headerEnd = output.indexOf(0x0a, at);
    if (headerEnd < 0) throw new TreeChangesUnreadable(`cat-file output ends before ${id}`);
    const header = output.toString('latin1', at, headerEnd);
    const [gotId, type, sizeText] = header.split(' ');
    const size = Number(sizeText);
    if (gotId !== id || type !== expectedType || !Number.isSafeInteger(size) || size < 0) {
      throw new TreeChangesUnreadable(
        `cat-file answered ${JSON.stringify(header)} for ${expectedType} ${id}`,
      );
    }
    const start = headerEnd + 1;
    if (start + size + 1 > output.length || output[start + size] !== 0x0a) {
      throw new TreeChangesUnreadable(`cat-file output of ${id} is cut short`);
    }
    contents.set(id, output.subarray(start, start + size));
    at = start + size + 1;
  }
  if (at !== output.length) throw new TreeChangesUnreadable('cat-file wrote more than was asked for');
  return contents;
}
