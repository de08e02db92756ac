package dialect_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// The Responses translators read bytes from callers and serves: whatever
// arrives, they must not panic, a request is either translated to a valid
// Chat body or refused with one of the two request errors, and what the
// stream emits is valid JSON in valid frames.

func FuzzResponsesRequest(f *testing.F) {
	seedJSON(f, "responses_to_openai")
	for _, s := range []string{
		`{"model":"m","input":"hi","store":true,"user":"u"}`,
		`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{"a":[1,"x"]}},{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"ok"}]}]}`,
		`{"model":"m","input":[{"type":"reasoning","content":[{"type":"reasoning_text","text":"t"}]},{"role":"assistant","content":"a"}],"text":{"format":{"type":"json_schema","schema":{}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _, err := dialect.ResponsesToOpenAI(body)
		if err != nil {
			var re *dialect.RequestError
			var ue *dialect.UnsupportedError
			if !errors.As(err, &re) && !errors.As(err, &ue) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		var chat struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		if json.Unmarshal(out, &chat) != nil || chat.Model == "" {
			t.Fatalf("invalid output %s", out)
		}
	})
}

func FuzzResponsesStreamChunk(f *testing.F) {
	seedStreams(f, "openai_stream_to_responses")
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := dialect.NewResponsesStream(dialect.RequestInfo{Model: "m"})
		out, err := tr.Chunk(data)
		checkFrames(t, out)
		if err == nil {
			out, _ = tr.Chunk(data)
			checkFrames(t, out)
		}
		checkFrames(t, tr.Finish())
		checkFrames(t, tr.ErrorEvent())
	})
}

func FuzzOpenAIResponseToResponses(f *testing.F) {
	seedJSON(f, "openai_response_to_responses")
	f.Fuzz(func(t *testing.T, body []byte) {
		if out, err := dialect.OpenAIResponseToResponses(body, dialect.RequestInfo{Model: "m"}); err == nil && !json.Valid(out) {
			t.Fatalf("invalid output %s", out)
		}
	})
}
