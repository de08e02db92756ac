// Package dialect translates between the wire formats callers and serves speak: Anthropic Messages and OpenAI Chat Completions, and for callers the OpenAI Responses API.
//
// It is pure: bytes in, bytes out, no I/O. The handler decides when to
// translate (caller dialect differs from the tier's) and owns HTTP,
// admission and errors. MAPPING.md beside this file tabulates every field.
//
// # Anthropic caller, OpenAI serve (the main path)
//
//   - AnthropicToOpenAI builds the upstream body and a RequestInfo. Only
//     max_tokens and messages are enforced (*RequestError → 400
//     invalid_request_error); anything else malformed is skipped.
//   - OpenAIResponseToAnthropic translates a non-streaming reply.
//   - NewAnthropicStream returns a StreamTranslator: Start once the serve's
//     first event arrived, Chunk per event payload, then Finish — or
//     ErrorEvent if the stream broke or Chunk returned an error.
//   - CountTokens serves /v1/messages/count_tokens with an estimate.
//
// # OpenAI caller, Anthropic serve
//
// OpenAIToAnthropic, AnthropicResponseToOpenAI and NewOpenAIStream (an
// OpenAIStream: Start, Event per Anthropic event payload, Finish, which
// also writes "data: [DONE]", or ErrorEvent).
//
// # Responses caller, OpenAI serve
//
// ResponsesToOpenAI is strict (only the stateless subset of the Responses
// API is served): a top-level member outside
// the allow-list, or a feature the router cannot honour, is an
// *UnsupportedError naming every such field (400 unsupported_feature); a
// malformed value is a *RequestError. Namespace and custom (free-form)
// tools are offered to the serve as functions and their calls mapped back
// (RequestInfo.ToolOrigins); hosted tools are dropped (RequestInfo.
// DroppedTools) or refused, per ResponsesOptions. OpenAIResponseToResponses
// translates a non-streaming reply; NewResponsesStream returns a
// ResponsesStream (Start, Chunk per event payload, Finish or ErrorEvent)
// that emits the official event sequence with sequence_number, text,
// reasoning and function-call arguments as they arrive, each parallel
// tool call its own item. Reasoning becomes a reasoning item with
// reasoning_text content, and reasoning items sent back as input become
// the next assistant turn's reasoning_content. A reply cut at the length
// limit is status "incomplete" (stream: response.incomplete) with
// incomplete_details {reason: "max_output_tokens"}.
//
// # Decisions
//
// Thinking. A request's "thinking" becomes chat_template_kwargs
// {"enable_thinking","thinking"} by default (see ThinkingStyle for
// reasoning_effort or omission). Thinking blocks in assistant history become
// the message's reasoning_content, which the Qwen3/GLM/DeepSeek templates
// read (and drop for turns before the last user message, as Anthropic
// does); redacted_thinking is dropped. A serve's reasoning text — vLLM's
// "reasoning", SGLang's "reasoning_content" — becomes a thinking block,
// first in the content.
//
// Signatures. Thinking blocks carry "signature":"" and streams send no
// signature_delta: there is nothing to sign, and the SDK types require the
// field. Incoming signatures are ignored.
//
// Stop reasons. A finish_reason "stop" whose stop string the
// serve names (vLLM's choice stop_reason, SGLang's matched_stop, when a
// string) becomes stop_reason "stop_sequence" with that stop_sequence; a
// numeric one (a stop token) is end_turn. A reply that ends in tool calls
// is tool_use (tool_calls the other way) even when the serve says "stop" —
// vLLM does for forced tool choice — unless it was cut at the length limit:
// agent loops run tools only on that reason. The other way, an Anthropic
// stop_sequence becomes the choice's stop_reason, where vLLM reports the
// matched stop string, beside finish_reason "stop".
//
// Usage. Anthropic's input_tokens excludes cache reads, OpenAI's
// prompt_tokens includes them: cached_tokens moves to
// cache_read_input_tokens and is subtracted from input_tokens (and added
// back the other way). A cache figure the serve did not send is omitted,
// never zero-filled. message_start carries the estimated input tokens;
// message_delta carries the serve's real input, output and cache counts.
//
// Tool calls. Ids pass through verbatim (some templates, e.g. Kimi-K2's,
// parse their own ids back out of history); only missing ids are
// synthesized (toolu_…, call_…). Arguments stream as they arrive: each
// serve fragment becomes one input_json_delta (or tool_calls delta), with
// the serve's JSON string copied without re-encoding. Arguments that are
// not a JSON object in a non-streaming reply are kept as
// {"_unparsed_arguments": "<raw>"}.
//
// Streams. Block indexes count from 0 in emission order; a block is closed
// when a block of another kind or another tool call starts, or at Finish. A
// reply without content gets one empty text block. In-band serve errors
// and malformed events are errors (ErrInBandError, ErrMalformedEvent), so a
// failed stream never reaches the caller as a clean finish. Chunk and
// Event return a buffer that is reused by the next call; on the hot path
// they allocate nothing.
package dialect
