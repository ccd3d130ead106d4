import { Injectable } from '@nestjs/common';

/** In-process counters of webhook outcomes (rejections touch nothing else). */
@Injectable()
export class WebhookCounters {
  private readonly counts = new Map<string, number>();

  rejected(provider: string, reason: string): void {
    this.bump(`rejected:${provider}:${reason}`);
  }

  accepted(provider: string, outcome: string): void {
    this.bump(`received:${provider}:${outcome.toLowerCase()}`);
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  private bump(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }
}
