// What each answer makes the official SDKs do, counted at the wire: both
// retry 408, 409, 429 and 5xx twice by default unless the answer says
// X-Should-Retry: false, and wait for a Retry-After under 60 s. A refusal
// the same request meets again must cost one request; the exhaustion 503
// must send the caller to its own provider at once (one request); a rate
// limit must be waited out and retried.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { cfg, timeout } from './helpers.mjs';

// counted returns a fetch that counts the requests the SDK sends.
function counted() {
  const c = { n: 0 };
  c.fetch = (...args) => { c.n++; return fetch(...args); };
  return c;
}

const sdks = {
  openai: (c, opts = {}) => {
    const api = new OpenAI({ baseURL: cfg.base + '/v1', apiKey: cfg.token, fetch: c.fetch, maxRetries: 2, timeout, ...opts });
    return (body) => api.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], ...body });
  },
  anthropic: (c, opts = {}) => {
    const api = new Anthropic({ baseURL: cfg.base, apiKey: cfg.token, authToken: null, fetch: c.fetch, maxRetries: 2, timeout, ...opts });
    return (body) => api.messages.create({ max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...body });
  },
};

// A request the router refuses as invalid, per API.
const badRequest = {
  openai: { model: 42 },
  anthropic: { model: cfg.model, messages: 'not a list' },
};

const long = 'word '.repeat(10_000); // over the tiers' 8,192-token context

for (const [name, sdk] of Object.entries(sdks)) {
  describe(`${name} SDK retries (maxRetries: 2)`, () => {
    const once = [
      ['401 wrong router token', 401, { model: cfg.model }, { apiKey: 'wrong-token' }],
      ['403 model outside the key', 403, { model: cfg.model }, { defaultHeaders: { 'x-api-key': cfg.key } }],
      ['404 unknown model', 404, { model: 'no-such-model' }],
      ['400 invalid request', 400, badRequest[name]],
      ['413 prompt over the context window', 413, { model: cfg.model, messages: [{ role: 'user', content: long }] }],
      ['503 exhaustion: go to your own provider now', 503, { model: cfg.downModel }],
    ];
    for (const [label, status, body, opts] of once) {
      test(`${label}: one request, then the error`, async () => {
        const c = counted();
        await assert.rejects(sdk(c, opts)(body), (err) => {
          assert.equal(err.status, status, `${err?.constructor?.name}: ${err?.message}`);
          return true;
        });
        assert.equal(c.n, 1, `the SDK sent ${c.n} requests`);
      });
    }

    test('429 rate limit: waits Retry-After, retries, succeeds', async () => {
      // Spend the key's burst (60), so the next request is refused with
      // Retry-After: 1 — then the SDK must wait about that long.
      for (let i = 0; i < 70; i++) {
        const r = await fetch(cfg.base + '/v1/models', { headers: { Authorization: `Bearer ${cfg.token}`, 'x-api-key': cfg.rateKey } });
        await r.arrayBuffer();
        if (r.status === 429) break;
      }
      const c = counted();
      const t0 = Date.now();
      const reply = await sdk(c, { defaultHeaders: { 'x-api-key': cfg.rateKey } })({ model: cfg.model });
      const waited = Date.now() - t0;
      assert.ok(reply, 'the retried request succeeds');
      assert.equal(c.n, 2, `the SDK sent ${c.n} requests`);
      assert.ok(waited >= 800, `retried after ${waited} ms, before the Retry-After of 1 s`);
    });
  });
}
