// The official openai SDK against the router: chat, tools through the
// stream helpers, legacy completions, embeddings, Responses, and the typed
// errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { cfg, tiers, timeout, maxRetries, toolArgs, toolResult, expectAPIError } from './helpers.mjs';

// client talks to the router's /v1 with the router token, as any OpenAI
// client pointed at a compatible base URL does (Authorization: Bearer).
function client(opts = {}) {
  return new OpenAI({ baseURL: `${cfg.base}/v1`, apiKey: cfg.token, maxRetries, timeout, ...opts });
}

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const ask = [{ role: 'user', content: 'What is the weather in Paris?' }];

for (const [tierLabel, model] of tiers) {
describe(`openai chat completions (${tierLabel})`, () => {
  test('non-streaming', async () => {
    const c = await client().chat.completions.create({ model: model, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(c.object, 'chat.completion');
    assert.equal(c.model, model, 'the reply names the model the caller asked for');
    assert.equal(c.choices[0].message.content, cfg.text);
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.ok(c.usage.completion_tokens > 0);
    assert.match(c._request_id, /\S/, 'the SDK exposes the router\'s X-Request-Id');
  });

  test('streaming, chunk by chunk', async () => {
    const stream = await client().chat.completions.create({
      model: model, messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true },
    });
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.model, model);
      for (const ch of chunk.choices) {
        text += ch.delta.content ?? '';
        finish = ch.finish_reason ?? finish;
      }
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, cfg.text);
    assert.equal(finish, 'stop');
    assert.ok(chunks > 3, `${chunks} chunks: the answer must arrive in pieces`);
    assert.ok(usage?.completion_tokens > 0, 'include_usage brings a usage chunk');
  });

  test('stream helper: content events and finalChatCompletion', async () => {
    const s = client().chat.completions.stream({ model: model, messages: [{ role: 'user', content: 'hi' }] });
    const deltas = [];
    s.on('content', (delta) => deltas.push(delta));
    const done = await s.finalChatCompletion();
    assert.equal(deltas.join(''), cfg.text);
    assert.equal(deltas.length > 1, true);
    assert.equal(done.choices[0].message.content, cfg.text);
    assert.equal(await s.finalContent(), cfg.text);
  });

  test('tool round trip through the stream helper', async () => {
    const api = client();
    const s = api.chat.completions.stream({ model: model, messages: ask, tools: [weatherTool] });
    const argDeltas = [];
    const done = [];
    s.on('tool_calls.function.arguments.delta', (e) => argDeltas.push(e.arguments_delta));
    s.on('tool_calls.function.arguments.done', (e) => done.push(e));
    const first = await s.finalChatCompletion();
    const msg = first.choices[0].message;
    assert.equal(first.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.tool_calls.length, 1);
    const call = msg.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.match(call.id, /\S/);
    assert.deepEqual(JSON.parse(call.function.arguments), toolArgs);
    assert.ok(argDeltas.length > 1, 'the arguments arrive in several deltas');
    assert.equal(done.length, 1);
    assert.equal(done[0].name, 'get_weather');
    assert.deepEqual(JSON.parse(done[0].arguments), toolArgs);

    // Send the result back; the answer quotes it.
    const s2 = api.chat.completions.stream({
      model: model, tools: [weatherTool],
      messages: [...ask, msg, { role: 'tool', tool_call_id: call.id, content: toolResult }],
    });
    const final = await s2.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(final.choices[0].message.content, cfg.toolPrefix + toolResult);
  });

  test('tool round trip with runTools (streaming runner)', async () => {
    const calls = [];
    const runner = client().chat.completions.runTools({
      model: model,
      messages: ask,
      stream: true,
      tools: [{
        type: 'function',
        function: {
          ...weatherTool.function,
          parse: JSON.parse,
          function: async (args) => { calls.push(args); return toolResult; },
        },
      }],
    });
    const content = await runner.finalContent();
    assert.deepEqual(calls, [toolArgs], 'the tool ran once with the streamed arguments');
    assert.equal(content, cfg.toolPrefix + toolResult);
    const roles = runner.messages.map((m) => m.role);
    assert.deepEqual(roles.slice(-3), ['assistant', 'tool', 'assistant']);
  });

  test('non-streaming tool call', async () => {
    const c = await client().chat.completions.create({ model: model, messages: ask, tools: [weatherTool] });
    const call = c.choices[0].message.tool_calls[0];
    assert.equal(c.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(JSON.parse(call.function.arguments), toolArgs);
  });

  test('a stream the serve breaks raises an APIError from the iterator', async () => {
    const stream = await client().chat.completions.create({
      model: cfg.brokenModel, messages: [{ role: 'user', content: 'hi' }], stream: true,
    });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    }, (err) => {
      assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, undefined, 'an in-band error has no HTTP status');
      assert.match(err.message, /stream interrupted/);
      return true;
    });
    assert.ok(cfg.text.startsWith(text) && text.length > 0, `partial text ${JSON.stringify(text)}`);
  });
});
}

describe('openai embeddings', () => {
  test('default request (the SDK asks for base64) and explicit float agree', async () => {
    const api = client();
    const dflt = await api.embeddings.create({ model: cfg.embedModel, input: ['alpha', 'beta'] });
    const float = await api.embeddings.create({ model: cfg.embedModel, input: ['alpha', 'beta'], encoding_format: 'float' });
    assert.equal(dflt.data.length, 2);
    for (const [i, d] of dflt.data.entries()) {
      assert.equal(d.index, i);
      assert.ok(d.embedding.length > 0 && d.embedding.every((x) => typeof x === 'number'));
      assert.deepEqual(Array.from(d.embedding), float.data[i].embedding);
    }
    assert.notDeepEqual(dflt.data[0].embedding, dflt.data[1].embedding);
  });

  test('unknown embeddings model is a NotFoundError', async () => {
    await expectAPIError(client().embeddings.create({ model: 'no-such-embedder', input: 'x', encoding_format: 'float' }),
      OpenAI.NotFoundError, 404, (err) => assert.equal(err.type, 'model_not_found'));
  });
});

describe('openai legacy completions (autocomplete, fill in the middle)', () => {
  test('non-streaming, with a suffix', async () => {
    const c = await client().completions.create({
      model: cfg.model, prompt: cfg.fimPrompt, suffix: cfg.fimSuffix, max_tokens: 64, temperature: 0,
    });
    assert.equal(c.object, 'text_completion');
    assert.equal(c.model, cfg.model, 'the reply names the model the caller asked for');
    assert.equal(c.choices.length, 1);
    assert.equal(c.choices[0].text, cfg.fimText, 'the serve received prompt and suffix');
    assert.equal(c.choices[0].finish_reason, 'stop');
    assert.ok(c.usage.completion_tokens > 0);
    assert.match(c._request_id, /\S/);
  });

  test('streaming, chunk by chunk', async () => {
    const stream = await client().completions.create({
      model: cfg.model, prompt: 'Say hello', stream: true, stream_options: { include_usage: true },
    });
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'text_completion');
      assert.equal(chunk.model, cfg.model);
      for (const ch of chunk.choices) {
        text += ch.text;
        finish = ch.finish_reason ?? finish;
      }
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, cfg.text);
    assert.equal(finish, 'stop');
    assert.ok(chunks > 3, `${chunks} chunks: the answer must arrive in pieces`);
    assert.ok(usage?.completion_tokens > 0, 'include_usage brings a usage chunk');
  });

  test('a list prompt is a batch, one choice each', async () => {
    const c = await client().completions.create({ model: cfg.model, prompt: ['a', 'b'], max_tokens: 1 });
    assert.deepEqual(c.choices.map((ch) => [ch.index, ch.text, ch.finish_reason]), [[0, 'Hello', 'length'], [1, 'Hello', 'length']]);
  });

  test('a stream the serve breaks raises an APIError from the iterator', async () => {
    const stream = await client().completions.create({ model: cfg.brokenModel, prompt: 'x', stream: true });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    }, (err) => {
      assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.match(err.message, /stream interrupted/);
      return true;
    });
    assert.ok(cfg.text.startsWith(text) && text.length > 0, `partial text ${JSON.stringify(text)}`);
  });

  test('an Anthropic-dialect tier is a BadRequestError naming why', async () => {
    await expectAPIError(client().completions.create({ model: cfg.anthropicTierModel, prompt: 'x' }), OpenAI.BadRequestError, 400, (err) => {
      assert.equal(err.type, 'invalid_request_error');
      assert.match(err.message, /Anthropic-dialect tier/);
    });
  });

  test('an API key outside its allowed_backends is a PermissionDeniedError', async () => {
    const keyed = client({ defaultHeaders: { 'x-api-key': cfg.key } });
    const ok = await keyed.completions.create({ model: cfg.keyModel, prompt: 'x' });
    assert.equal(ok.choices[0].text, cfg.text, 'the key works for its own model');
    await expectAPIError(keyed.completions.create({ model: cfg.model, prompt: 'x' }), OpenAI.PermissionDeniedError, 403);
  });
});

describe('openai typed errors', () => {
  const chat = (api, model = cfg.model) => api.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });

  test('wrong router token is an AuthenticationError', async () => {
    await expectAPIError(chat(client({ apiKey: 'wrong-token' })), OpenAI.AuthenticationError, 401, (err) => {
      assert.equal(err.type, 'authentication_error');
      assert.equal(err.error.type, 'authentication_error');
      assert.match(err.message, /^401 invalid or missing API key/);
      assert.match(err.requestID, /\S/);
      assert.ok(!err.message.includes('wrong-token'), 'the credential is not echoed');
    });
  });

  test('an API key outside its allowed_backends is a PermissionDeniedError', async () => {
    // With a router token in force the key travels in the other header.
    const keyed = client({ defaultHeaders: { 'x-api-key': cfg.key } });
    const ok = await chat(keyed, cfg.keyModel);
    assert.equal(ok.choices[0].message.content, cfg.text, 'the key works for its own model');
    await expectAPIError(chat(keyed), OpenAI.PermissionDeniedError, 403, (err) => {
      assert.equal(err.type, 'permission_error');
      assert.match(err.message, new RegExp(`model "${cfg.model}" is not permitted`));
    });
  });

  test('unknown model is a NotFoundError', async () => {
    await expectAPIError(chat(client(), 'no-such-model'), OpenAI.NotFoundError, 404, (err) => {
      assert.equal(err.type, 'model_not_found');
      assert.equal(err.error.message, 'unknown configured model');
    });
  });

  test('a refused serve is an InternalServerError with status 503', async () => {
    await expectAPIError(chat(client(), cfg.downModel), OpenAI.InternalServerError, 503, (err) => {
      assert.equal(err.type, 'service_unavailable');
    });
  });

  test('errors of stream requests are raised before any chunk', async () => {
    await expectAPIError(client().chat.completions.create({ model: cfg.downModel, messages: ask, stream: true }),
      OpenAI.InternalServerError, 503);
    const s = client().chat.completions.stream({ model: 'no-such-model', messages: ask });
    await expectAPIError(s.finalChatCompletion(), OpenAI.NotFoundError, 404);
  });
});

for (const [tierLabel, model] of tiers) {
describe(`openai responses (${tierLabel})`, () => {
  const fnTool = {
    type: 'function',
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    strict: true,
  };
  const input = 'What is the weather in Paris?';

  test('non-streaming', async () => {
    const r = await client().responses.create({ model: model, input: 'hi' });
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, cfg.text);
    assert.match(r.id, /\S/);
  });

  test('streaming with create({stream: true})', async () => {
    const stream = await client().responses.create({ model: model, input: 'hi', stream: true });
    const types = [];
    let text = '', seq = -1;
    for await (const e of stream) {
      types.push(e.type);
      assert.ok(e.sequence_number > seq, `sequence_number ${e.sequence_number} after ${seq}`);
      seq = e.sequence_number;
      if (e.type === 'response.output_text.delta') text += e.delta;
    }
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
    assert.equal(text, cfg.text);
  });

  test('stream helper: text deltas and finalResponse', async () => {
    const s = client().responses.stream({ model: model, input: 'hi' });
    const deltas = [];
    s.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const r = await s.finalResponse();
    assert.equal(deltas.join(''), cfg.text);
    assert.equal(r.output_text, cfg.text);
  });

  test('function call round trip through the stream helper', async () => {
    const api = client();
    const s = api.responses.stream({ model: model, input, tools: [fnTool] });
    const argDeltas = [];
    s.on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta));
    const first = await s.finalResponse();
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call, `no function_call in ${JSON.stringify(first.output)}`);
    assert.equal(call.name, 'get_weather');
    assert.match(call.call_id, /\S/);
    assert.deepEqual(JSON.parse(call.arguments), toolArgs);
    assert.equal(argDeltas.join(''), call.arguments);

    const s2 = api.responses.stream({
      model: model,
      tools: [fnTool],
      input: [
        { role: 'user', content: input },
        ...first.output,
        { type: 'function_call_output', call_id: call.call_id, output: toolResult },
      ],
    });
    const final = await s2.finalResponse();
    assert.equal(final.output_text, cfg.toolPrefix + toolResult);
  });

  test('a stream the serve breaks raises an APIError from the helper', async () => {
    const s = client().responses.stream({ model: cfg.brokenModel, input: 'hi' });
    await assert.rejects(s.finalResponse(), (err) => {
      assert.ok(err instanceof OpenAI.APIError, `got ${err?.constructor?.name}: ${err?.message}`);
      assert.match(err.message, /stream interrupted/);
      return true;
    });
  });

  test('typed errors', async () => {
    const create = (api, m = model) => api.responses.create({ model: m, input: 'hi' });
    const type = (t) => (err) => assert.equal(err.type, t);
    await expectAPIError(create(client({ apiKey: 'wrong-token' })), OpenAI.AuthenticationError, 401, type('authentication_error'));
    await expectAPIError(create(client({ defaultHeaders: { 'x-api-key': cfg.key } })), OpenAI.PermissionDeniedError, 403, type('permission_error'));
    await expectAPIError(create(client(), 'no-such-model'), OpenAI.NotFoundError, 404, type('model_not_found'));
    await expectAPIError(create(client(), cfg.downModel), OpenAI.InternalServerError, 503, type('service_unavailable'));
    await expectAPIError(client().responses.stream({ model: cfg.downModel, input: 'hi' }).finalResponse(), OpenAI.InternalServerError, 503);
  });
});
}
