package backends_test

import (
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name             string
		usage            string
		prompt, complete int
	}{
		{"vLLM usage", `{"prompt_tokens":12,"total_tokens":17,"completion_tokens":5,"prompt_tokens_details":null}`, 12, 5},
		{"spaced", `{ "prompt_tokens" : 3 , "completion_tokens" : 4 }`, 3, 4},
		{"nested key of the same name is not read", `{"prompt_tokens_details":{"prompt_tokens":9},"completion_tokens":1}`, 0, 1},
		{"missing fields", `{}`, 0, 0},
		{"not integers", `{"prompt_tokens":"12","completion_tokens":1.5}`, 0, 0},
		{"null", `null`, 0, 0},
		{"empty", ``, 0, 0},
		{"malformed", `{"prompt_tokens":`, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, c := backends.ParseUsage([]byte(tc.usage))
			if p != tc.prompt || c != tc.complete {
				t.Fatalf("ParseUsage = %d, %d; want %d, %d", p, c, tc.prompt, tc.complete)
			}
		})
	}
}

func TestReplyUsage(t *testing.T) {
	reply := `{"id":"x","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 99}"}}],"usage":{"prompt_tokens":7,"completion_tokens":2}}`
	if p, c := backends.ReplyUsage([]byte(reply)); p != 7 || c != 2 {
		t.Fatalf("ReplyUsage = %d, %d; want 7, 2 (the top-level usage, not text that looks like it)", p, c)
	}
}
