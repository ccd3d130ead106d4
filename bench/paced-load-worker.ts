/**
 * Worker thread of paced-load.ts: sends the requests on their schedule and reports each one's latency,
 * counted from when it was due (not from when a free socket let it go), so that a stall of the server
 * shows in the figures instead of slowing the load down.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import type { PacedLoadResult, PacedLoadSpec } from './paced-load.js';

const spec = workerData as PacedLoadSpec;
const agent = new Agent({ keepAlive: true, maxSockets: spec.maxSockets });
const target = new URL(spec.url);
const latencies = new Float64Array(spec.amount);
const status: Record<string, number> = {};
let errors = 0;
let sent = 0;
let answered = 0;
let lastAnswerAt = 0;
const intervalMs = 1000 / spec.rate;
const start = performance.now() + 10;

function send(index: number, due: number): void {
  const template = spec.templates[index % spec.templates.length]!;
  const headers: Record<string, string> = {
    ...template.headers,
    [spec.idHeader]: `${spec.idPrefix}-${index}`,
    'content-length': String(Buffer.byteLength(template.body)),
  };
  let settled = false;
  const done = (code: string): void => {
    // A request and its response may both report an error: count each request once.
    if (settled) return;
    settled = true;
    const now = performance.now();
    latencies[index] = now - due;
    status[code] = (status[code] ?? 0) + 1;
    if (code === 'error') errors++;
    lastAnswerAt = now;
    if (++answered === spec.amount) finish();
  };
  const req = request(
    { host: target.hostname, port: target.port, method: 'POST', path: template.path, headers, agent },
    (res) => {
      res.resume();
      res.on('end', () => done(String(res.statusCode)));
      res.on('error', () => done('error'));
    },
  );
  req.on('error', () => done('error'));
  req.end(template.body);
}

function finish(): void {
  clearInterval(ticker);
  agent.destroy();
  const result: PacedLoadResult = {
    latencies,
    status,
    errors,
    durationMs: lastAnswerAt - start,
  };
  parentPort!.postMessage(result);
}

// Every millisecond, everything that has fallen due goes out.
const ticker = setInterval(() => {
  const now = performance.now();
  while (sent < spec.amount) {
    const due = start + sent * intervalMs;
    if (due > now) break;
    send(sent++, due);
  }
}, 1);
