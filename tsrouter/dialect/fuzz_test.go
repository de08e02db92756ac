package dialect_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// The translators read bytes from serves and callers: whatever arrives, they
// must not panic, and what they emit must be valid JSON in valid frames.

func seedStreams(f *testing.F, dir string) {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.in.sse"))
	for _, file := range files {
		for _, line := range strings.Split(string(readFileF(f, file)), "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				f.Add([]byte(d))
			}
		}
	}
}

func seedJSON(f *testing.F, dir string) {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.in.json"))
	for _, file := range files {
		f.Add(readFileF(f, file))
	}
}

func readFileF(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// checkFrames checks that every "data: " line of out is valid JSON (or
// [DONE]).
func checkFrames(t *testing.T, out []byte) {
	for _, line := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "[DONE]" && !json.Valid([]byte(d)) {
			t.Fatalf("invalid frame data %q", d)
		}
	}
}

func FuzzAnthropicStreamChunk(f *testing.F) {
	seedStreams(f, "openai_stream_to_anthropic")
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := dialect.NewAnthropicStream("m", dialect.RequestInfo{})
		// Twice: the second pass sees the state the first one left.
		out, err := tr.Chunk(data)
		checkFrames(t, out)
		if err == nil {
			out, _ = tr.Chunk(data)
			checkFrames(t, out)
		}
		checkFrames(t, tr.Finish())
	})
}

func FuzzOpenAIStreamEvent(f *testing.F) {
	seedStreams(f, "anthropic_stream_to_openai")
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := dialect.NewOpenAIStream("m", dialect.RequestInfo{IncludeUsage: true})
		out, err := tr.Event(data)
		checkFrames(t, out)
		if err == nil {
			out, _ = tr.Event(data)
			checkFrames(t, out)
		}
		checkFrames(t, tr.Finish())
	})
}

func FuzzRequests(f *testing.F) {
	seedJSON(f, "anthropic_to_openai")
	seedJSON(f, "openai_to_anthropic")
	f.Fuzz(func(t *testing.T, body []byte) {
		if out, _, err := dialect.AnthropicToOpenAI(body, dialect.ToOpenAIOptions{}); err == nil && !json.Valid(out) {
			t.Fatalf("AnthropicToOpenAI: invalid output %s", out)
		}
		if out, _, err := dialect.OpenAIToAnthropic(body, dialect.ToAnthropicOptions{}); err == nil && !json.Valid(out) {
			t.Fatalf("OpenAIToAnthropic: invalid output %s", out)
		}
		dialect.CountTokens(body)
	})
}

func FuzzResponses(f *testing.F) {
	seedJSON(f, "openai_response_to_anthropic")
	seedJSON(f, "anthropic_response_to_openai")
	f.Fuzz(func(t *testing.T, body []byte) {
		if out, err := dialect.OpenAIResponseToAnthropic(body, "m"); err == nil && !json.Valid(out) {
			t.Fatalf("OpenAIResponseToAnthropic: invalid output %s", out)
		}
		if out, err := dialect.AnthropicResponseToOpenAI(body, "m"); err == nil && !json.Valid(out) {
			t.Fatalf("AnthropicResponseToOpenAI: invalid output %s", out)
		}
	})
}
