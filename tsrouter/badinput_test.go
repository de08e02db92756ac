package tsrouter_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOutputCapHoldsForEveryNumericForm: the tier's max_output_tokens must
// bind whatever spelling the caller uses for a budget, because the serves'
// parsers accept strings, exponents and decimals as integers. Integer
// values in any JSON number notation are clamped (and rewritten as plain
// integers); strings, fractions, negatives and non-numbers are refused
// with 400 in the caller's envelope, naming the field, and never reach the
// serve.
func TestOutputCapHoldsForEveryNumericForm(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		body      string
		wantField string // upstream field → raw JSON, when served
		wantRaw   string
		wantErr   string // substring of the 400's message, when refused
	}{
		{"exponent", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":5e3}`, "max_tokens", "512", ""},
		{"decimal integer", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":5000.0}`, "max_tokens", "512", ""},
		{"huge", "/v1/chat/completions", `{"model":"chat","messages":[],"max_completion_tokens":99999999999999999999999}`, "max_completion_tokens", "512", ""},
		{"huge exponent", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":1e400}`, "max_tokens", "512", ""},
		{"small exponent normalised", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":1E2}`, "max_tokens", "100", ""},
		{"zero left to the serve", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":0}`, "max_tokens", "0", ""},
		{"string", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":"5000"}`, "", "", "max_tokens must be an integer"},
		{"negative", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":-1}`, "", "", "max_tokens must not be negative"},
		{"huge negative", "/v1/chat/completions", `{"model":"chat","messages":[],"max_completion_tokens":-1e400}`, "", "", "max_completion_tokens must not be negative"},
		{"fraction", "/v1/chat/completions", `{"model":"chat","messages":[],"max_tokens":5000.5}`, "", "", "max_tokens must be an integer"},
		{"boolean", "/v1/chat/completions", `{"model":"chat","messages":[],"max_output_tokens":true}`, "", "", "max_output_tokens must be an integer"},
		{"anthropic string", "/v1/messages", `{"model":"chat","max_tokens":"9000","messages":[{"role":"user","content":"hi"}]}`, "", "", "max_tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, url := startRaw(t, "application/json", `{"id":"x","model":"served-model","choices":[]}`)
			base := startRouter(t, oneTier(url, "max_output_tokens = 512"), routerOpts{env: map[string]string{"SERVE_A_KEY": "serve-secret"}})
			resp := post(t, t.Context(), base+tc.path, tc.body)
			got := readAll(t, resp)
			if tc.wantErr != "" {
				if resp.StatusCode != 400 || !strings.Contains(got, tc.wantErr) || !strings.Contains(got, "invalid_request_error") {
					t.Fatalf("status %d %s; want 400 invalid_request_error with %q", resp.StatusCode, got, tc.wantErr)
				}
				select {
				case b := <-up.lastBody:
					t.Errorf("refused request reached the serve: %s", b)
				default:
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, got)
			}
			var sent map[string]json.RawMessage
			if err := json.Unmarshal([]byte(<-up.lastBody), &sent); err != nil {
				t.Fatal(err)
			}
			if string(sent[tc.wantField]) != tc.wantRaw {
				t.Errorf("upstream %s = %s, want %s", tc.wantField, sent[tc.wantField], tc.wantRaw)
			}
		})
	}
}

// TestCaseVariantsOfRouterOwnedKeysAreRefused: "Model" or "MAX_TOKENS"
// beside (or instead of) the field the router rewrote would be used by a
// serve that matches keys case-insensitively; they get the duplicate-key
// 400 and never reach the serve.
func TestCaseVariantsOfRouterOwnedKeysAreRefused(t *testing.T) {
	for _, tc := range []struct{ name, path, body string }{
		{"Model", "/v1/chat/completions", `{"model":"chat","Model":"other-model","messages":[]}`},
		{"MAX_TOKENS", "/v1/chat/completions", `{"model":"chat","MAX_TOKENS":100000,"messages":[]}`},
		{"Stream", "/v1/chat/completions", `{"model":"chat","Stream":true,"messages":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, url := startRaw(t, "application/json", `{"id":"x","model":"served-model","choices":[]}`)
			base := startRouter(t, oneTier(url, "max_output_tokens = 512"), routerOpts{env: map[string]string{"SERVE_A_KEY": "serve-secret"}})
			resp := post(t, t.Context(), base+tc.path, tc.body)
			got := readAll(t, resp)
			if resp.StatusCode != 400 || !strings.Contains(got, "invalid_request_error") {
				t.Fatalf("status %d %s; want 400 invalid_request_error", resp.StatusCode, got)
			}
			select {
			case b := <-up.lastBody:
				t.Errorf("refused request reached the serve: %s", b)
			default:
			}
		})
	}
}
