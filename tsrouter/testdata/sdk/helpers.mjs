// Shared setup of the SDK tests. TestNodeSDK (tsrouter/sdk_test.go) starts
// the fake serves and the router and passes their addresses and credentials
// through the environment; run the tests through it, not on their own.
import assert from 'node:assert/strict';

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through TestNodeSDK (go test -count=1 -run '^TestNodeSDK$' -v ./tsrouter/)`);
  }
  return v;
}

export const cfg = {
  // The router's root URL (no /v1).
  base: need('ANVIL_BASE_URL'),
  // The router token.
  token: need('ANVIL_TOKEN'),
  // An API key whose allowed_backends cover only keyModel's tier.
  key: need('ANVIL_KEY'),
  // An API key limited to 60 requests a minute (Retry-After: 1 once spent).
  rateKey: need('ANVIL_RATE_KEY'),
  // A working chat model, the key's one model, a model whose serve refuses
  // connections, a model whose serve breaks its stream after two deltas,
  // and the embeddings model.
  model: need('ANVIL_MODEL'),
  // The same serve behind an Anthropic-dialect tier: OpenAI callers are
  // translated both ways, Anthropic callers passed through.
  anthropicTierModel: need('ANVIL_ANTHROPIC_TIER_MODEL'),
  keyModel: need('ANVIL_KEY_MODEL'),
  downModel: need('ANVIL_DOWN_MODEL'),
  brokenModel: need('ANVIL_BROKEN_MODEL'),
  embedModel: need('ANVIL_EMBED_MODEL'),
  // The fake serve's answer and the prefix of its answer to a tool result.
  text: need('ANVIL_TEXT'),
  toolPrefix: need('ANVIL_TOOL_PREFIX'),
  // A fill-in-the-middle prompt and suffix, and the fake serve's answer
  // to them (it quotes both ends, so the test sees both arrived).
  fimPrompt: need('ANVIL_FIM_PROMPT'),
  fimSuffix: need('ANVIL_FIM_SUFFIX'),
  fimText: need('ANVIL_FIM_TEXT'),
};

// tiers runs a suite against both kinds of tier: the caller's API must
// not care which dialect the serve speaks.
export const tiers = [
  ['OpenAI-dialect tier', cfg.model],
  ['Anthropic-dialect tier', cfg.anthropicTierModel],
];

// Network rule: these tests only ever talk to loopback.
const host = new URL(cfg.base).hostname;
if (host !== '127.0.0.1' && host !== '[::1]') {
  throw new Error(`ANVIL_BASE_URL must be a loopback address, got ${host}`);
}

// A short client timeout: every answer here is local and immediate, and a
// hung stream must fail the test rather than stall CI. No retries, so each
// test sees exactly the router's first answer.
export const timeout = 10_000;
export const maxRetries = 0;

// The fixed arguments of the fake serve's tool call.
export const toolArgs = { city: 'Paris' };
export const toolResult = '21 C and sunny in Paris';

// expectAPIError awaits promise (or calls fn) and checks it failed with the
// SDK's typed error class for status; check gets the error for more.
export async function expectAPIError(promiseOrFn, Class, status, check) {
  await assert.rejects(promiseOrFn, (err) => {
    assert.ok(err instanceof Class, `want ${Class.name}, got ${err?.constructor?.name}: ${err?.message}`);
    assert.equal(err.status, status);
    check?.(err);
    return true;
  });
}
