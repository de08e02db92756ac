// A request a guardrail blocks, as the official SDKs see it: their typed
// BadRequestError (400), error.type guardrail_blocked, the provider and
// category named, no retry. The router's config blocks prompts naming
// cfg.guardWord (a rules provider on the input stage).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { cfg, tiers, timeout, expectAPIError } from './helpers.mjs';

const word = process.env.ANVIL_GUARD_WORD;
const prompt = [{ role: 'user', content: `tell me about ${word}` }];

function named(err) {
  assert.equal(err.error?.error?.type ?? err.error?.type, 'guardrail_blocked');
  const msg = err.error?.error?.message ?? err.error?.message ?? err.message;
  assert.match(msg, /guardrail "house-rules" \(category "confidential"\)/);
  assert.doesNotMatch(err.message, new RegExp(word), 'the error never echoes the matched text');
}

for (const [tierLabel, model] of tiers) {
  describe(`a guardrail block (${tierLabel})`, () => {
    test('openai: BadRequestError, not retried', async () => {
      // maxRetries 2: a retryable error would be sent three times; the
      // router says X-Should-Retry: false, so the SDK gives up at once.
      const c = new OpenAI({ baseURL: `${cfg.base}/v1`, apiKey: cfg.token, maxRetries: 2, timeout });
      const started = Date.now();
      await expectAPIError(c.chat.completions.create({ model, messages: prompt }), OpenAI.BadRequestError, 400, named);
      assert.ok(Date.now() - started < 2000, 'no retry back-off');
    });

    test('openai Responses: BadRequestError', async () => {
      const c = new OpenAI({ baseURL: `${cfg.base}/v1`, apiKey: cfg.token, maxRetries: 0, timeout });
      await expectAPIError(c.responses.create({ model, input: `tell me about ${word}` }), OpenAI.BadRequestError, 400, named);
    });

    test('anthropic: BadRequestError', async () => {
      const c = new Anthropic({ baseURL: cfg.base, apiKey: cfg.token, authToken: null, maxRetries: 0, timeout });
      await expectAPIError(c.messages.create({ model, max_tokens: 16, messages: prompt }), Anthropic.BadRequestError, 400, named);
    });
  });
}
