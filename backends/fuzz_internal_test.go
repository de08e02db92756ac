package backends

import (
	"strings"
	"testing"
)

// FuzzClassifyInband: any in-stream error event classifies to a kind and a
// caller-safe message, never a panic, and the message carries no slash,
// '@' or control character (no path, URL, e-mail or injected line).
func FuzzClassifyInband(f *testing.F) {
	for _, s := range []string{
		`{"error":{"message":"queue full","code":503}}`,
		`{"object":"error","message":"Input too long","type":"BadRequestError","code":400}`,
		`{"error":{"code":"429"}}`,
		`{"error":{"message":"see /opt/x and http://10.0.0.1/","code":400}}`,
		`{"error":"plain"}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := classifyInband(data)
		if e.Kind < Unavailable || e.Kind > Interrupted || e.Message == "" {
			t.Fatalf("classifyInband(%q) = %+v", data, e)
		}
		checkCallerSafe(t, e.Message)
	})
}

// FuzzUpstreamMessage: a serve's 4xx body yields either the fixed message
// or the fixed message and a message of safe shape.
func FuzzUpstreamMessage(f *testing.F) {
	for _, s := range []string{
		`{"error":{"message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","code":400}}`,
		`{"message":"max_tokens must be at least 1, got 0."}`,
		`{"error":{"message":"host vllm-internal.corp:8000 key hf_AbCdEf0123456789"}}`,
		`{"error":{"message":"a\u2028b"}}`,
		`<html>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg := upstreamMessage(body, msgRejected)
		if msg != msgRejected && !strings.HasPrefix(msg, msgRejected+": ") {
			t.Fatalf("message %q lost its fixed prefix", msg)
		}
		checkCallerSafe(t, msg)
	})
}

func checkCallerSafe(t *testing.T, msg string) {
	t.Helper()
	if len(msg) > 400 || strings.ContainsAny(msg, "/@\\\n\r\t") {
		t.Fatalf("unsafe message passed: %q", msg)
	}
	for _, r := range msg {
		if r < 0x20 || r > 0x7e {
			t.Fatalf("non-printable or non-ASCII rune %U passed: %q", r, msg)
		}
	}
}

// FuzzParseLive: any /metrics scrape gives a Live reading (ok with values,
// or unavailable with a reason), never a panic. (The scrape parser is
// moving to prometheus/common's expfmt; this target follows parseLive.)
func FuzzParseLive(f *testing.F) {
	f.Add([]byte("# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 3\nvllm:num_requests_waiting{model_name=\"m\"} 1\nvllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n"), "m")
	f.Add([]byte("sglang:num_running_reqs{model_name=\"m\"} 2 1700000000\nsglang:num_queue_reqs 0\n"), "")
	f.Add([]byte("vllm:num_requests_running{model_name=\"other\"} 9\n"), "m")
	f.Add([]byte("vllm:num_requests_running{model_name=\"m\",x=\"a\\\"b\"} NaN\n"), "m")
	f.Add([]byte("garbage line\n"), "m")
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		l := parseLive(body, model)
		switch l.Status {
		case "ok":
		case "unavailable":
			if l.Reason == "" {
				t.Fatalf("unavailable without a reason: %+v", l)
			}
		default:
			t.Fatalf("status %q", l.Status)
		}
	})
}
