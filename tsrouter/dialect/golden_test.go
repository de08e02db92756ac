package dialect_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// Golden tests: each testdata/<dir>/NAME.in.* is translated and compared
// with NAME.want.* — semantically for JSON, byte for byte for SSE. Run
// `go test -run Golden -update` to rewrite the wants, then review the diff.

// requestGolden is the want of a request translation: the upstream body and
// what RequestInfo reports.
type requestGolden struct {
	Body json.RawMessage
	Info dialect.RequestInfo
}

func TestGoldenAnthropicToOpenAI(t *testing.T) {
	dir := "anthropic_to_openai"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, info, err := dialect.AnthropicToOpenAI(in, dialect.ToOpenAIOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), []byte(mustJSON(requestGolden{out, info})))
		})
	}
}

func TestGoldenOpenAIToAnthropic(t *testing.T) {
	dir := "openai_to_anthropic"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, info, err := dialect.OpenAIToAnthropic(in, dialect.ToAnthropicOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), []byte(mustJSON(requestGolden{out, info})))
		})
	}
}

func TestGoldenOpenAIResponseToAnthropic(t *testing.T) {
	dir := "openai_response_to_anthropic"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, err := dialect.OpenAIResponseToAnthropic(in, "claude-sonnet-4-5")
			if err != nil {
				t.Fatal(err)
			}
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), out)
		})
	}
}

func TestGoldenAnthropicResponseToOpenAI(t *testing.T) {
	dir := "anthropic_response_to_openai"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, err := dialect.AnthropicResponseToOpenAI(in, "gpt-alias")
			if err != nil {
				t.Fatal(err)
			}
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), out)
		})
	}
}

// translateOpenAIStream runs a serve's OpenAI SSE through a
// StreamTranslator the way the handler will: Start after the first event,
// Chunk per event until [DONE], Finish — or ErrorEvent on an error.
func translateOpenAIStream(t *testing.T, in []byte) []byte {
	t.Helper()
	events, params := parseSSE(t, in)
	info := dialect.RequestInfo{Model: "claude-sonnet-4-5", Stream: true, InputTokens: intParam(t, params, "input_tokens", 42)}
	tr := dialect.NewAnthropicStream(info.Model, info)
	var out []byte
	for i, ev := range events {
		if ev.data == "[DONE]" {
			break
		}
		if i == 0 {
			out = append(out, tr.Start()...)
		}
		b, err := tr.Chunk([]byte(ev.data))
		out = append(out, b...)
		if err != nil {
			return append(out, tr.ErrorEvent()...)
		}
	}
	return append(out, tr.Finish()...)
}

func TestGoldenOpenAIStreamToAnthropic(t *testing.T) {
	dir := "openai_stream_to_anthropic"
	for _, name := range goldenCases(t, dir, "sse") {
		t.Run(name, func(t *testing.T) {
			out := translateOpenAIStream(t, readFile(t, filepath.Join("testdata", dir, name+".in.sse")))
			replayAnthropic(t, out)
			checkTextGolden(t, filepath.Join("testdata", dir, name+".want.sse"), out)
		})
	}
}

// translateAnthropicStream is translateOpenAIStream's counterpart for an
// Anthropic serve behind an OpenAI caller.
func translateAnthropicStream(t *testing.T, in []byte) []byte {
	t.Helper()
	events, params := parseSSE(t, in)
	info := dialect.RequestInfo{Model: "gpt-alias", Stream: true, IncludeUsage: params["include_usage"] != "false", InputTokens: intParam(t, params, "input_tokens", 42)}
	tr := dialect.NewOpenAIStream(info.Model, info)
	out := tr.Start()
	for _, ev := range events {
		b, err := tr.Event([]byte(ev.data))
		out = append(out, b...)
		if err != nil {
			return append(out, tr.ErrorEvent()...)
		}
	}
	return append(out, tr.Finish()...)
}

func TestGoldenAnthropicStreamToOpenAI(t *testing.T) {
	dir := "anthropic_stream_to_openai"
	for _, name := range goldenCases(t, dir, "sse") {
		t.Run(name, func(t *testing.T) {
			out := translateAnthropicStream(t, readFile(t, filepath.Join("testdata", dir, name+".in.sse")))
			replayOpenAI(t, out)
			checkTextGolden(t, filepath.Join("testdata", dir, name+".want.sse"), out)
		})
	}
}
