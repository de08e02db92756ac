package telemetry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// get calls handler with GET target and decodes the JSON answer.
// view serves a view as the router does: its JSON body, or its
// QueryError's status with {"error":{"type","message"}}.
func view(f func(rawQuery string) ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		body, err := f(req.URL.RawQuery)
		status := http.StatusOK
		if err != nil {
			var qe *telemetry.QueryError
			if !errors.As(err, &qe) {
				qe = &telemetry.QueryError{Status: http.StatusInternalServerError, Type: "internal_error", Message: err.Error()}
			}
			status = qe.Status
			body, _ = json.Marshal(map[string]any{"error": map[string]string{"type": qe.Type, "message": qe.Message}})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}
}

func get(t *testing.T, h http.HandlerFunc, target string) (int, http.Header, map[string]any) {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	rec := httptest.NewRecorder()
	h(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: body %q: %v", target, rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", target, ct)
	}
	return rec.Code, rec.Header(), body
}

// errType returns error.type of an error envelope, checking its shape.
func errType(t *testing.T, body map[string]any) string {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok || len(body) != 1 || len(e) != 2 {
		t.Fatalf("not a generic error envelope: %v", body)
	}
	if _, ok := e["message"].(string); !ok {
		t.Fatalf("no message: %v", body)
	}
	return e["type"].(string)
}

func TestDecisionsLimit(t *testing.T) {
	r := newRecorder(t, telemetry.Options{})
	for i := range 30 {
		r.Record(served("llm.primary", "qwen-a", i, 1, 1))
	}
	tests := []struct {
		query      string
		wantStatus int
		wantCount  int
	}{
		{"", 200, 20},
		{"?limit=5", 200, 5},
		{"?limit=500", 200, 30},
		{"?limit=", 200, 20}, // blank values are ignored, as parse_qs did
		{"?limit=1&other=x", 200, 1},
		{"?limit=0", 400, 0},
		{"?limit=501", 400, 0},
		{"?limit=-1", 400, 0},
		{"?limit=abc", 400, 0},
		{"?limit=1.5", 400, 0},
		{"?limit=1&limit=2", 400, 0},
		{"?limit=%zz", 400, 0},
	}
	for _, tc := range tests {
		t.Run("q="+tc.query, func(t *testing.T) {
			code, _, body := get(t, view(r.Decisions), "/v1/decisions"+tc.query)
			if code != tc.wantStatus {
				t.Fatalf("status %d, want %d: %v", code, tc.wantStatus, body)
			}
			if code != 200 {
				if typ := errType(t, body); typ != "invalid_request" {
					t.Errorf("error type %q", typ)
				}
				return
			}
			recs := body["records"].([]any)
			if len(recs) != tc.wantCount || body["count"] != float64(tc.wantCount) || body["available"] != float64(30) {
				t.Errorf("count %v available %v records %d", body["count"], body["available"], len(recs))
			}
			// Newest records, oldest first.
			last := recs[len(recs)-1].(map[string]any)
			if last["total_prompt_tokens"] != float64(29) {
				t.Errorf("last record %v", last)
			}
		})
	}
}

func TestDecisionsShape(t *testing.T) {
	r := newRecorder(t, telemetry.Options{})
	d := served("llm.primary", "qwen-a", 100, 20, 50)
	d.RequestID, d.TaskID = "req_123", "task-7"
	r.Record(d)
	r.Record(failed("llm.primary", "qwen-a", "unavailable"))
	_, _, body := get(t, view(r.Decisions), "/v1/decisions")

	for _, k := range []string{"count", "available", "limit", "records", "totals", "omitted_fields"} {
		if _, ok := body[k]; !ok {
			t.Errorf("missing %q", k)
		}
	}
	recs := body["records"].([]any)
	first := recs[0].(map[string]any)
	wantKeys := []string{"route", "kind", "requested_tier", "served_tier", "attempts", "total_prompt_tokens",
		"total_completion_tokens", "request_bytes", "response_bytes", "latency_ms", "request_id", "workbench_run_id", "task_id"}
	if len(first) != len(wantKeys) {
		t.Errorf("record keys %v", first)
	}
	for _, k := range wantKeys {
		if _, ok := first[k]; !ok {
			t.Errorf("record lacks %q", k)
		}
	}
	if first["workbench_run_id"] != "-" || first["request_id"] != "req_123" || first["task_id"] != "task-7" {
		t.Errorf("correlation ids %v %v %v", first["request_id"], first["workbench_run_id"], first["task_id"])
	}
	second := recs[1].(map[string]any)
	if second["served_tier"] != "-" || second["request_id"] != "-" {
		t.Errorf("missing strings must render as -: %v", second)
	}
	a := second["attempts"].([]any)[0].(map[string]any)
	if a["tier_id"] != "qwen-a" || a["succeeded"] != false || a["reason"] != "unavailable" || a["outcome"] != "skipped" {
		t.Errorf("attempt %v", a)
	}

	totals := body["totals"].(map[string]any)
	want := map[string]any{
		"prompt_tokens": 100.0, "completion_tokens": 20.0, "request_bytes": 100.0, "response_bytes": 200.0, "latency_ms": 50.0,
		"served_tiers":     map[string]any{"qwen-a": 1.0},
		"attempt_outcomes": map[string]any{"served": 1.0, "skipped": 1.0},
	}
	if got, _ := json.Marshal(totals); string(got) != mustJSON(want) {
		t.Errorf("totals %s, want %s", got, mustJSON(want))
	}
	if om := body["omitted_fields"].([]any); len(om) == 0 {
		t.Error("omitted_fields empty")
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestDecisionsEmptyRing(t *testing.T) {
	r := newRecorder(t, telemetry.Options{})
	_, _, body := get(t, view(r.Decisions), "/v1/decisions")
	if recs, ok := body["records"].([]any); !ok || len(recs) != 0 {
		t.Errorf("records %v (want [])", body["records"])
	}
}

func TestRedaction(t *testing.T) {
	tests := []struct {
		name, reason, want string
	}{
		{"plain label", "backend_error_timeout", "backend_error_timeout"},
		{"bearer token", "Bearer this-is-a-token", "<redacted>"},
		{"bearer inside text", "upstream said Bearer abcdef123 nope", "upstream_said_<redacted>_nope"},
		{"bearer underscore", "bearer_abcdefgh", "<redacted>"},
		{"openai key", "key sk-proj-abcdefghij leaked", "key_<redacted>_leaked"},
		{"short sk is not a key", "sk-abc", "sk-abc"},
		{"env assignment", "QWEN_API_KEY=s3cr3t", "<redacted>"},
		{"token colon", "x-auth-token: abc", "<redacted>"},
		{"secret lowercase", "client_secret=zzz tail", "<redacted>_tail"},
		{"whitespace and > collapse", "a  b>>c\nd", "a_b_c_d"},
		{"empty", "", "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, telemetry.Options{})
			r.Record(failed("llm.primary", "qwen-a", tc.reason))
			code, _, body := get(t, view(r.Decisions), "/v1/decisions")
			if code != 200 {
				t.Fatal(code)
			}
			rec := body["records"].([]any)[0].(map[string]any)
			got := rec["attempts"].([]any)[0].(map[string]any)["reason"]
			if got != tc.want {
				t.Errorf("reason %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRedactionRawBody(t *testing.T) {
	r := newRecorder(t, telemetry.Options{})
	r.Record(failed("llm.primary", "qwen-a", "Authorization: Bearer abcdefghijkl"))
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/decisions", nil)
	rec := httptest.NewRecorder()
	view(r.Decisions)(rec, req)
	if s := rec.Body.String(); strings.Contains(s, "abcdefghijkl") || !strings.Contains(s, "<redacted>") {
		t.Errorf("body %s", s)
	}
}
