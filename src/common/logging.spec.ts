import { describe, expect, it } from '@jest/globals';
import { redactUrl } from './logging.js';

describe('redactUrl', () => {
  it('hides credentials and one-time OAuth values in the query, and nothing else', () => {
    expect(redactUrl('/connections/gitlab/callback?code=abc123&state=xyz&installation_id=7')).toBe(
      '/connections/gitlab/callback?code=[redacted]&state=[redacted]&installation_id=7',
    );
    expect(redactUrl('/x?TOKEN=1&refresh_token=2&access_token=3')).toBe(
      '/x?TOKEN=[redacted]&refresh_token=[redacted]&access_token=[redacted]',
    );
    expect(redactUrl('/webhooks/github?repository=5d1c')).toBe('/webhooks/github?repository=5d1c');
  });
});
