/**
 * Runs a pass every `intervalMs`, never two at once (a slow pass makes the next tick a no-op), and
 * reports failures instead of throwing: the next pass simply tries again.
 */
export class PeriodicTask {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Starts ticking; `immediately` also runs a first pass right away. */
  start(intervalMs: number, immediately = false): void {
    if (immediately) void this.tick();
    this.timer = setInterval(() => void this.tick(), intervalMs);
  }

  /** Stops ticking and waits for a pass in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = this.pass()
      .catch((e: unknown) => this.onError(e))
      .finally(() => {
        this.running = undefined;
      });
    await this.running;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
