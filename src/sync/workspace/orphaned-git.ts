import { readFile, readdir } from 'node:fs/promises';
import { basename, sep } from 'node:path';

/**
 * Kills git processes left running by a previous worker process on this workspace. git runs in its own
 * process group (so timeouts can kill it with its helpers), which also means it outlives a worker killed
 * alone: such a git would keep writing into a clone this worker is about to use, with no timer left.
 * Linux only (reads /proc); elsewhere nothing is done. Returns the process groups killed.
 */
export async function killOrphanedGit(
  workspaceRoot: string,
  log: (msg: string, fields?: object) => void,
): Promise<number[]> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const root = workspaceRoot.endsWith(sep) ? workspaceRoot : workspaceRoot + sep;
  const groups = new Set<number>();
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let argv: string[];
    let stat: string;
    try {
      argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    const program = basename(argv[0] ?? '');
    if (!program.startsWith('git')) continue;
    if (!argv.some((arg) => arg.startsWith(root))) continue;
    // /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may contain spaces, so parse after ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    if (Number.isInteger(pgrp) && pgrp > 1 && pgrp !== process.pid) groups.add(pgrp);
  }
  const killed: number[] = [];
  for (const pgrp of groups) {
    try {
      process.kill(-pgrp, 'SIGKILL');
      killed.push(pgrp);
    } catch {
      // already gone, or not ours
    }
  }
  if (killed.length) log('killed git processes left by a previous worker', { processGroups: killed });
  return killed;
}
