/**
 * An open-loop load at a fixed rate: request i is due at i / rate seconds and goes out then, whatever the
 * answers to earlier ones are doing, over up to `maxSockets` keep-alive connections. Latencies count from
 * the due time (corrected for coordinated omission). Runs in a worker thread, off the event loop of a
 * server under test in the same process.
 *
 * autocannon's own rate option is not used for this: each of its connections sends its whole quota for a
 * second back to back as the second starts, then waits, which measures bursts at full speed rather than a
 * steady rate.
 */
import { Worker } from 'node:worker_threads';

export interface PacedRequestTemplate {
  path: string;
  body: string;
  headers: Record<string, string>;
}

export interface PacedLoadSpec {
  /** Origin of the server, e.g. http://127.0.0.1:3000. */
  url: string;
  /** Requests cycle through these. */
  templates: PacedRequestTemplate[];
  /** Header that gets a value unique to each request (`<idPrefix>-<n>`). */
  idHeader: string;
  idPrefix: string;
  /** Requests per second. */
  rate: number;
  /** Requests in all. */
  amount: number;
  maxSockets: number;
}

export interface PacedLoadResult {
  /** Milliseconds from each request's due time to the end of its answer. */
  latencies: Float64Array;
  /** Answers by status code (`error` for a failed request). */
  status: Record<string, number>;
  errors: number;
  /** From the first due time to the last answer. */
  durationMs: number;
}

/** Sends the paced load and resolves once every request has been answered (or has failed). */
export function firePaced(spec: PacedLoadSpec): Promise<PacedLoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./paced-load-worker.js', import.meta.url), { workerData: spec });
    worker.once('message', (result: PacedLoadResult) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`the paced load worker exited with ${code}`));
    });
  });
}

/** The value below which `fraction` of the sorted values lie. */
export function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const at = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[at]!;
}
