// The official @anthropic-ai/sdk against the router's /v1/messages (served
// by an OpenAI-dialect tier through the dialect translator): messages,
// the stream helper, a tool round trip, count_tokens and the typed errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { cfg, tiers, timeout, maxRetries, toolArgs, toolResult, expectAPIError } from './helpers.mjs';

// client talks to the router root (the SDK appends /v1/messages). This SDK
// sends apiKey as "Authorization: Bearer"; authToken is pinned to null so an
// ANTHROPIC_AUTH_TOKEN in the environment cannot add a credential.
function client(opts = {}) {
  return new Anthropic({ baseURL: cfg.base, apiKey: cfg.token, authToken: null, maxRetries, timeout, ...opts });
}

const weatherTool = {
  name: 'get_weather',
  description: 'Current weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};
const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];

for (const [tierLabel, model] of tiers) {
describe(`anthropic messages (${tierLabel})`, () => {
  test('non-streaming', async () => {
    const m = await client().messages.create({ model: model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(m.type, 'message');
    assert.equal(m.role, 'assistant');
    assert.equal(m.model, model);
    assert.equal(m.stop_reason, 'end_turn');
    assert.deepEqual(m.content.map((b) => b.type), ['text']);
    assert.equal(m.content[0].text, cfg.text);
    assert.ok(m.usage.output_tokens > 0);
    assert.match(m._request_id, /\S/, 'the router sends request-id, where this SDK looks');
  });

  test('x-api-key alone is accepted as the router token', async () => {
    // What older SDKs and curl examples send.
    const api = client({ apiKey: null, defaultHeaders: { 'x-api-key': cfg.token } });
    const m = await api.messages.create({ model: model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(m.content[0].text, cfg.text);
  });

  test('raw event stream with create({stream: true})', async () => {
    const stream = await client().messages.create({ model: model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }], stream: true });
    const types = [];
    let text = '';
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') text += e.delta.text;
    }
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.ok(types.includes('content_block_start') && types.includes('content_block_stop') && types.includes('message_delta'));
    assert.equal(text, cfg.text);
  });

  test('stream helper: text events and finalMessage', async () => {
    const s = client().messages.stream({ model: model, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    const deltas = [];
    s.on('text', (delta) => deltas.push(delta));
    const m = await s.finalMessage();
    assert.ok(deltas.length > 1, 'the text arrives in several deltas');
    assert.equal(deltas.join(''), cfg.text);
    assert.equal(m.content[0].text, cfg.text);
    assert.equal(m.stop_reason, 'end_turn');
    assert.equal(await s.finalText(), cfg.text);
  });

  test('tool round trip through the stream helper (input_json_delta)', async () => {
    const api = client();
    const s = api.messages.stream({ model: model, max_tokens: 64, tools: [weatherTool], messages: ask });
    const partials = [];
    let snapshot;
    s.on('inputJson', (partial, snap) => { partials.push(partial); snapshot = snap; });
    const first = await s.finalMessage();
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    assert.ok(use, `no tool_use block in ${JSON.stringify(first.content)}`);
    assert.equal(use.name, 'get_weather');
    assert.match(use.id, /\S/);
    assert.deepEqual(use.input, toolArgs);
    assert.ok(partials.length > 1, 'the input arrives in several input_json_delta events');
    assert.equal(partials.join(''), JSON.stringify(toolArgs));
    assert.deepEqual(snapshot, toolArgs, 'the helper\'s parsed snapshot after the last delta');

    const s2 = api.messages.stream({
      model: model, max_tokens: 64, tools: [weatherTool],
      messages: [
        ...ask,
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: toolResult }] },
      ],
    });
    const final = await s2.finalMessage();
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(await s2.finalText(), cfg.toolPrefix + toolResult);
  });

  test('tool round trip with the beta toolRunner (streaming)', async () => {
    const calls = [];
    const runner = client().beta.messages.toolRunner({
      model: model, max_tokens: 64, messages: ask, stream: true,
      // Threads are kept by Anthropic's servers; against any other server
      // the runner must send the whole history each turn.
      thread: false,
      tools: [{ ...weatherTool, parse: (input) => input, run: async (input) => { calls.push(input); return toolResult; } }],
    });
    const final = await runner.runUntilDone();
    assert.deepEqual(calls, [toolArgs], 'the tool ran once with the streamed input');
    assert.equal(final.stop_reason, 'end_turn');
    assert.equal(final.content.map((b) => b.text ?? '').join(''), cfg.toolPrefix + toolResult);
  });

  // The runner's default keeps the conversation in Anthropic's server-side
  // message threads: body "thread": {"type":"create"}, then
  // {"type":"continue","previous_message_id":…} with only the new messages
  // and no tools. A stateless router must refuse that rather than relay a
  // tool_result whose tool_use the serve never sees.
  test('the default toolRunner (server-side threads) is refused with a BadRequestError', async () => {
    const runner = client().beta.messages.toolRunner({
      model: model, max_tokens: 64, messages: ask,
      tools: [{ ...weatherTool, parse: (input) => input, run: async () => toolResult }],
    });
    await expectAPIError(runner.runUntilDone(), Anthropic.BadRequestError, 400, (err) => assert.match(err.apiMessage, /thread/));
  });

  test('tool result given as text blocks', async () => {
    const m = await client().messages.create({
      model: model, max_tokens: 64, tools: [weatherTool],
      messages: [
        ...ask,
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: toolArgs }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: toolResult }] }] },
      ],
    });
    assert.equal(m.content[0].text, cfg.toolPrefix + toolResult);
  });

  test('a stream the serve breaks raises an error from the helper', async () => {
    const s = client().messages.stream({ model: cfg.brokenModel, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
    await assert.rejects(s.finalMessage(), (err) => {
      assert.ok(err instanceof Anthropic.APIError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.match(err.message, /stream interrupted/);
      return true;
    });
  });

  test('count_tokens', async () => {
    const api = client();
    const short = await api.messages.countTokens({ model: model, messages: [{ role: 'user', content: 'hi' }] });
    const long = await api.messages.countTokens({ model: model, messages: [{ role: 'user', content: 'hi '.repeat(200) }] });
    assert.ok(Number.isInteger(short.input_tokens) && short.input_tokens > 0);
    assert.ok(long.input_tokens > short.input_tokens, `${long.input_tokens} vs ${short.input_tokens}`);
  });
});
}

describe('anthropic typed errors', () => {
  const create = (api, model = cfg.model) => api.messages.create({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  // The Anthropic envelope: {"type":"error","error":{"type":…,"message":…}}.
  const envelope = (type) => (err) => {
    assert.equal(err.error.type, 'error');
    assert.match(err.requestID, /\S/);
    assert.equal(err.type, type);
    assert.match(err.apiMessage, /\S/);
  };

  test('wrong router token is an AuthenticationError', async () => {
    await expectAPIError(create(client({ apiKey: 'wrong-token' })), Anthropic.AuthenticationError, 401, envelope('authentication_error'));
  });

  test('an API key outside its allowed_backends is a PermissionDeniedError', async () => {
    // apiKey carries the router token (Authorization), x-api-key the key.
    const keyed = client({ defaultHeaders: { 'x-api-key': cfg.key } });
    const ok = await create(keyed, cfg.keyModel);
    assert.equal(ok.content[0].text, cfg.text, 'the key works for its own model');
    await expectAPIError(create(keyed), Anthropic.PermissionDeniedError, 403, (err) => {
      envelope('permission_error')(err);
      assert.match(err.apiMessage, new RegExp(`model "${cfg.model}" is not permitted`));
    });
  });

  test('unknown model is a NotFoundError', async () => {
    await expectAPIError(create(client(), 'no-such-model'), Anthropic.NotFoundError, 404, envelope('model_not_found'));
  });

  test('a refused serve is an InternalServerError with status 503', async () => {
    await expectAPIError(create(client(), cfg.downModel), Anthropic.InternalServerError, 503, envelope('service_unavailable'));
  });

  test('errors of stream requests are raised before any event', async () => {
    const s = client().messages.stream({ model: cfg.downModel, max_tokens: 16, messages: ask });
    await expectAPIError(s.finalMessage(), Anthropic.InternalServerError, 503);
    await expectAPIError(client().messages.countTokens({ model: cfg.model, messages: ask }, { headers: { Authorization: 'Bearer wrong-token' } }),
      Anthropic.AuthenticationError, 401);
  });
});

// Clients configured with a base URL ending in /anthropic (as continuum's
// docs tell them) reach the same handlers under /anthropic/v1/….
describe('anthropic SDK with a base URL ending in /anthropic', () => {
  const api = (opts = {}) => client({ baseURL: cfg.base + '/anthropic', ...opts });

  for (const [tierLabel, model] of tiers) {
    test(`messages, stream and count_tokens (${tierLabel})`, async () => {
      const m = await api().messages.create({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(m.content[0].text, cfg.text);
      assert.equal(m.model, model);
      const s = api().messages.stream({ model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(await s.finalText(), cfg.text);
      const n = await api().messages.countTokens({ model, messages: [{ role: 'user', content: 'hi' }] });
      assert.ok(n.input_tokens > 0);
    });
  }

  test('models.list pages through every alias, models.retrieve reads one', async () => {
    const ids = [];
    for await (const m of api().models.list({ limit: 1 })) {
      assert.equal(m.type, 'model');
      ids.push(m.id);
    }
    for (const want of [cfg.model, cfg.anthropicTierModel, cfg.keyModel]) {
      assert.ok(ids.includes(want), `${want} not in ${ids}`);
    }
    assert.equal(new Set(ids).size, ids.length, 'no alias twice across pages');
    const one = await api().models.retrieve(cfg.model);
    assert.equal(one.id, cfg.model);
    assert.equal(one.display_name, cfg.model);
  });

  test("a key's allowed_backends filter the list and refuse other models", async () => {
    const keyed = api({ defaultHeaders: { 'x-api-key': cfg.key } });
    const ids = [];
    for await (const m of keyed.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [cfg.keyModel]);
    await expectAPIError(keyed.messages.create({ model: cfg.model, max_tokens: 16, messages: ask }), Anthropic.PermissionDeniedError, 403);
    await expectAPIError(keyed.models.retrieve(cfg.model), Anthropic.NotFoundError, 404);
  });
});
