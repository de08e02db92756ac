package telemetry_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// contractID is the contract's rule verbatim; ValidID must agree with it.
var contractID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

func TestValidIDMatchesContractRegex(t *testing.T) {
	cases := []string{
		"", "a", "A9", "req_123", "req.x:y-z_1", "-a", "_a", ".a", "a b", "a\nb", "a/b", "a?b",
		"a%20", "ü", "aü", strings.Repeat("a", 128), strings.Repeat("a", 129), "0" + strings.Repeat(":", 127),
		"a\x00", "a\t",
	}
	for _, s := range cases {
		if got, want := telemetry.ValidID(s), contractID.MatchString(s); got != want {
			t.Errorf("ValidID(%q) = %v, regex says %v", s, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	f.Add("req_123")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := telemetry.ValidID(s), contractID.MatchString(s); got != want {
			t.Errorf("ValidID(%q) = %v, regex says %v", s, got, want)
		}
	})
}

var generatedID = regexp.MustCompile(`^req_[0-9a-f]{24}$`)

func TestCorrelation(t *testing.T) {
	tests := []struct {
		name             string
		headers          map[string]string
		reqID, run, task string // reqID "" = expect a generated id
	}{
		{"none", nil, "", "", ""},
		{"all valid", map[string]string{
			"X-Request-Id": "req-1", "X-Anvil-Workbench-Run-Id": "run.7", "X-Anvil-Task-Id": "task:3",
		}, "req-1", "run.7", "task:3"},
		{"legacy request id", map[string]string{"Request-Id": "legacy_1"}, "legacy_1", "", ""},
		{"x-request-id wins", map[string]string{"X-Request-Id": "new", "Request-Id": "old"}, "new", "", ""},
		{"invalid x-request-id falls back", map[string]string{"X-Request-Id": "has space", "Request-Id": "old"}, "old", "", ""},
		{"invalid both generates", map[string]string{"X-Request-Id": "a/b", "Request-Id": "\x00"}, "", "", ""},
		{"invalid others dropped", map[string]string{
			"X-Request-Id": "ok", "X-Anvil-Workbench-Run-Id": "-leading-dash", "X-Anvil-Task-Id": strings.Repeat("t", 129),
		}, "ok", "", ""},
		{"header injection dropped", map[string]string{"X-Anvil-Task-Id": "a\r\nX-Evil: 1"}, "", "", ""},
		{"lower-case header names", map[string]string{"x-request-id": "lc"}, "lc", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v) // canonicalizes, as the server does
			}
			id, run, task, gen := telemetry.Correlation(h)
			if tc.reqID == "" {
				if !gen || !generatedID.MatchString(id) {
					t.Errorf("want a generated id, got %q (generated=%v)", id, gen)
				}
			} else if id != tc.reqID || gen {
				t.Errorf("request id %q (generated=%v), want %q", id, gen, tc.reqID)
			}
			if run != tc.run || task != tc.task {
				t.Errorf("run %q task %q, want %q %q", run, task, tc.run, tc.task)
			}
			if !telemetry.ValidID(id) {
				t.Errorf("id %q fails its own rule", id)
			}
		})
	}
}

func TestNewRequestIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := telemetry.NewRequestID()
		if seen[id] || !generatedID.MatchString(id) {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkCorrelation(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    http.Header
	}{
		{"caller ids", http.Header{
			"X-Request-Id": {"req-0123456789"}, "X-Anvil-Workbench-Run-Id": {"run-1"}, "X-Anvil-Task-Id": {"task-1"},
		}},
		{"generated", http.Header{"Content-Type": {"application/json"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				telemetry.Correlation(bc.h)
			}
		})
	}
}
