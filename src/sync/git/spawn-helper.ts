/**
 * Starts git from a small helper process instead of from the worker itself.
 *
 * Starting a process forks the one that starts it, and fork copies the page tables of the whole parent:
 * about 5 ms for a bare Node process, 15 ms at 260 MB resident, 27 ms at 900 MB, all of it with the
 * worker's event loop stopped. A sync starts about ten git processes, so a worker holding archives and
 * clients in memory spent a good part of every sync frozen in fork. The helper is a plain Node process
 * that does nothing else: it forks cheaply, and the worker's loop goes on meanwhile.
 *
 * What crosses the IPC channel: the spawn request (command, arguments, environment with any askpass
 * credentials, working directory, stdin, or stdin in parts when it comes later), then git's stdout and
 * stderr chunks and its exit. Nothing is
 * written to disk or argv. Killing stays with the caller: git runs in its own process group, which the
 * worker signals directly with the pid the helper reports. When the worker goes away the helper kills the
 * process groups it started and exits; a helper that dies fails the runs it had and is started again.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import type { SpawnFunction } from './git-runner.js';

// Runs as `node -e`: no file to find next to the compiled code (or the test sources).
const HELPER_SOURCE = `
'use strict';
const { spawn } = require('node:child_process');
const children = new Map();
const send = (message) => { if (process.connected) process.send(message); };
process.on('message', (m) => {
  if (m.type === 'stdin') {
    const running = children.get(m.id);
    if (running && running.stdin) {
      if (m.data) running.stdin.write(m.data);
      if (m.end) running.stdin.end();
    }
    return;
  }
  let child;
  try {
    child = spawn(m.command, m.args, {
      cwd: m.cwd, env: m.env, detached: true,
      stdio: [m.stdin === null ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    send({ id: m.id, type: 'error', message: String(error && error.message), code: error && error.code });
    return;
  }
  children.set(m.id, child);
  child.on('spawn', () => send({ id: m.id, type: 'spawned', pid: child.pid }));
  child.stdout.on('data', (data) => send({ id: m.id, type: 'stdout', data }));
  child.stderr.on('data', (data) => send({ id: m.id, type: 'stderr', data }));
  if (child.stdin) {
    child.stdin.on('error', () => {});
    if (m.stdinEnd) child.stdin.end(m.stdin); else child.stdin.write(m.stdin);
  }
  child.on('error', (error) => {
    if (child.pid !== undefined) return;
    children.delete(m.id);
    send({ id: m.id, type: 'error', message: String(error.message), code: error.code });
  });
  child.on('close', (code, signal) => {
    children.delete(m.id);
    send({ id: m.id, type: 'close', code, signal });
  });
});
process.on('disconnect', () => {
  for (const child of children.values()) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch {}
  }
  process.exit(0);
});
`;

type HelperMessage =
  | { id: number; type: 'spawned'; pid: number }
  | { id: number; type: 'stdout' | 'stderr'; data: Uint8Array }
  | { id: number; type: 'error'; message: string; code?: string }
  | { id: number; type: 'close'; code: number | null; signal: NodeJS.Signals | null };

/** The part of a ChildProcess GitRunner uses, fed by the helper's messages. */
class RemoteChild extends EventEmitter {
  pid: number | undefined = undefined;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: PassThrough | null;
  private killWhenSpawned: NodeJS.Signals | null = null;
  private ended = false;

  constructor(pipeStdin: boolean) {
    super();
    this.stdin = pipeStdin ? new PassThrough() : null;
  }

  /** Signals git's process group; before the helper has said its pid, as soon as it does. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.ended) return false;
    if (this.pid === undefined) {
      this.killWhenSpawned = signal;
      return true;
    }
    try {
      process.kill(-this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  receive(message: HelperMessage): void {
    switch (message.type) {
      case 'spawned':
        this.pid = message.pid;
        this.emit('spawn');
        if (this.killWhenSpawned) this.kill(this.killWhenSpawned);
        return;
      case 'stdout':
      case 'stderr': {
        const { data } = message;
        this[message.type].write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        return;
      }
      case 'error':
        this.fail(Object.assign(new Error(message.message), { code: message.code }));
        return;
      case 'close':
        this.end(message.code, message.signal);
        return;
    }
  }

  /** The process could not be started (pid stays undefined), or the helper died under it. */
  fail(error: Error): void {
    if (this.ended) return;
    if (this.pid === undefined) {
      this.ended = true;
      this.stdout.end();
      this.stderr.end();
      this.emit('error', error);
      return;
    }
    // Started, and its helper is gone: its output is lost, so it is stopped and over.
    this.kill('SIGKILL');
    this.end(null, 'SIGKILL');
  }

  private end(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.ended) return;
    this.ended = true;
    // 'close' after both streams have ended, as a ChildProcess does.
    let open = 2;
    const done = (): void => {
      if (--open === 0) this.emit('close', code, signal);
    };
    this.stdout.once('end', done).end();
    this.stderr.once('end', done).end();
    // Nobody may be reading them (an output the caller ignores): let 'end' come anyway.
    this.stdout.resume();
    this.stderr.resume();
  }
}

/** A SpawnFunction for GitRunner that starts processes from one helper process (see the module comment). */
export class SpawnHelper {
  private helper: ChildProcess | null = null;
  private readonly children = new Map<number, RemoteChild>();
  private nextId = 0;
  private closed = false;

  /** Starts `command` from the helper; same contract as child_process.spawn for what GitRunner uses. */
  readonly spawn: SpawnFunction = (command, args, options) => {
    if (this.closed) throw new Error('the spawn helper is closed');
    const pipeStdin = stdinIsPiped(options);
    const child = new RemoteChild(pipeStdin);
    const id = this.nextId++;
    this.children.set(id, child);
    const helper = this.ensureHelper();
    const send = (message: object): void => {
      try {
        helper.send(message, (error) => {
          if (error) this.children.get(id)?.fail(error);
        });
      } catch (error) {
        child.fail(error instanceof Error ? error : new Error(String(error)));
      }
    };
    // The caller usually writes all of stdin right after spawn returns, in the same turn: it goes with the
    // request. Input that comes later follows in parts.
    setImmediate(() => {
      const pipe = child.stdin;
      const stdin = pipe ? ((pipe.read() as Buffer | null) ?? Buffer.alloc(0)) : null;
      const stdinEnd = pipe === null || pipe.writableEnded;
      send({
        id,
        command,
        args: [...args],
        cwd: options.cwd === undefined ? undefined : String(options.cwd),
        env: options.env,
        stdin,
        stdinEnd,
      });
      if (pipe && !stdinEnd) {
        pipe.on('data', (data: Buffer) => send({ id, type: 'stdin', data }));
        pipe.on('end', () => send({ id, type: 'stdin', end: true }));
      }
    });
    child.once('close', () => this.children.delete(id));
    child.once('error', () => this.children.delete(id));
    return child as unknown as ChildProcess;
  };

  /** Stops the helper (it kills whatever it still runs). */
  close(): void {
    this.closed = true;
    // Runs still waiting fail once it has exited (see ensureHelper).
    if (this.helper?.connected) this.helper.disconnect();
  }

  private ensureHelper(): ChildProcess {
    if (this.helper) return this.helper;
    const helper = nodeSpawn(process.execPath, ['-e', HELPER_SOURCE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // Buffers cross as binary, not as JSON arrays of numbers.
      serialization: 'advanced',
      env: { PATH: process.env.PATH ?? '' },
    });
    helper.on('message', (message: HelperMessage) => this.children.get(message.id)?.receive(message));
    const lost = (): void => {
      if (this.helper !== helper) return;
      this.helper = null;
      for (const child of this.children.values()) child.fail(new Error('the spawn helper exited'));
      this.children.clear();
    };
    helper.on('exit', lost);
    helper.on('error', lost);
    // Neither the helper nor its channel keeps the worker alive.
    helper.unref();
    helper.channel?.unref();
    this.helper = helper;
    return helper;
  }
}

function stdinIsPiped(options: SpawnOptions): boolean {
  const stdio = options.stdio;
  return Array.isArray(stdio) ? stdio[0] === 'pipe' : stdio === 'pipe';
}
