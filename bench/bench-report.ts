/** What every benchmark shares: option parsing, the project root, and how figures are printed. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A positive integer command-line option, or a clear error naming it. */
export function positiveOption(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`);
  return n;
}

export function nonNegativeOption(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got ${raw}`);
  return n;
}

/** The checkout the benchmark runs from (where scripts/prisma.mjs is). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'scripts', 'prisma.mjs'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the project root (scripts/prisma.mjs)');
    dir = parent;
  }
  return dir;
}

/** Seconds from 1 s up, else milliseconds with `msDecimals` decimals. */
export function formatMs(ms: number, msDecimals = 1): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(msDecimals)} ms`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * A plain-text table: text columns (the first, and the last with `lastIsText`) to the left, figures to the
 * right, and with `rule` a line under the header row.
 */
export function table(rows: string[][], opts: { lastIsText: boolean; rule: boolean }): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r, ri) => {
      const isText = (i: number) => i === 0 || (opts.lastIsText && i === r.length - 1);
      const line = r
        .map((cell, i) => (isText(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
        .join('  ')
        .trimEnd();
      return opts.rule && ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}
