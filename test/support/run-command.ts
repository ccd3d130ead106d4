import { spawn } from 'node:child_process';

/** Runs a command (argument array, no shell) and resolves with its stdout; rejects with its stderr. */
export function runCommand(
  command: string,
  args: string[],
  opts: { cwd?: string; input?: Buffer } = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${command}: ${err}`)),
    );
    child.stdin.end(opts.input);
  });
}
