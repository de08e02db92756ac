package telemetry_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

func TestStatsAggregation(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Aliases: []string{"llm.primary", "chat", "idle"}})
	// llm.primary: latencies 1..20 ms; chat: one served, one failed, one
	// with no latency measured.
	for i := 1; i <= 20; i++ {
		r.Record(served("llm.primary", "qwen-a", 10, 5, float64(i)))
	}
	r.Record(served("chat", "qwen-b", 7, 3, 4.5))
	r.Record(failed("chat", "qwen-b", "unavailable"))

	code, _, body := get(t, view(r.Stats), "/v1/stats")
	if code != 200 {
		t.Fatalf("status %d: %v", code, body)
	}
	if body["object"] != "router_stats" || body["scope"] != "current_decision_log_buffer" || body["model"] != nil {
		t.Errorf("header fields %v %v %v", body["object"], body["scope"], body["model"])
	}
	for k, want := range map[string]float64{"available": 22, "matching": 22, "count": 22, "limit": 100} {
		if body[k] != want {
			t.Errorf("%s = %v, want %v", k, body[k], want)
		}
	}
	wantTotals := map[string]any{"total": 22.0, "succeeded": 21.0, "failed": 1.0}
	if mustJSON(body["requests"]) != mustJSON(wantTotals) {
		t.Errorf("requests %v", body["requests"])
	}
	if mustJSON(body["tokens"]) != mustJSON(map[string]any{"prompt": 207.0, "completion": 103.0, "total": 310.0}) {
		t.Errorf("tokens %v", body["tokens"])
	}
	if mustJSON(body["bytes"]) != mustJSON(map[string]any{"request": 2100.0, "response": 4200.0, "total": 6300.0}) {
		t.Errorf("bytes %v", body["bytes"])
	}
	lat := body["latency_ms"].(map[string]any)
	// 21 positive samples: 1..20 and 4.5; the failed record's 0 is not
	// one. Nearest rank: p50 is the 11th smallest, p95 the 20th.
	if lat["samples"] != 21.0 || lat["p50"] != 10.0 || lat["p95"] != 19.0 {
		t.Errorf("latency %v", lat)
	}
	if avg := lat["average"].(float64); avg != (210+4.5)/21 {
		t.Errorf("average %v", avg)
	}

	routes := body["routes"].(map[string]any)
	if len(routes) != 2 {
		t.Fatalf("routes %v", routes)
	}
	primary := routes["llm.primary"].(map[string]any)
	if p := primary["latency_ms"].(map[string]any); p["p50"] != 10.0 || p["p95"] != 19.0 {
		t.Errorf("primary latency %v", p)
	}
	chat := routes["chat"].(map[string]any)
	if mustJSON(chat["requests"]) != mustJSON(map[string]any{"total": 2.0, "succeeded": 1.0, "failed": 1.0}) {
		t.Errorf("chat requests %v", chat["requests"])
	}
}

func TestStatsPercentiles(t *testing.T) {
	tests := []struct {
		name          string
		latencies     []float64
		samples       float64
		avg, p50, p95 any
	}{
		{"no samples", nil, 0, nil, nil, nil},
		{"only unmeasured", []float64{0, 0}, 0, nil, nil, nil},
		{"one", []float64{7}, 1, 7.0, 7.0, 7.0},
		{"two", []float64{9, 3}, 2, 6.0, 3.0, 9.0},
		{"twenty", seq(1, 20), 20, 10.5, 10.0, 19.0},
		{"hundred", seq(1, 100), 100, 50.5, 50.0, 95.0},
		{"ignores zeros", []float64{0, 0, 0, 5}, 1, 5.0, 5.0, 5.0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, telemetry.Options{})
			for _, l := range tc.latencies {
				r.Record(served("m", "t", 1, 1, l))
			}
			_, _, body := get(t, view(r.Stats), "/v1/stats?limit=10000")
			lat := body["latency_ms"].(map[string]any)
			if lat["samples"] != tc.samples || lat["average"] != tc.avg || lat["p50"] != tc.p50 || lat["p95"] != tc.p95 {
				t.Errorf("latency %v; want samples %v avg %v p50 %v p95 %v", lat, tc.samples, tc.avg, tc.p50, tc.p95)
			}
		})
	}
}

func seq(lo, hi int) []float64 {
	var out []float64
	for i := lo; i <= hi; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestStatsFilters(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Aliases: []string{"llm.primary", "chat", "idle"}})
	for i := range 5 {
		r.Record(served("llm.primary", "qwen-a", i, 0, 1))
		r.Record(served("chat", "qwen-b", 100+i, 0, 1))
	}
	tests := []struct {
		query                   string
		model                   any
		matching, count, prompt float64
		wantRoutes              []string
		available               float64
	}{
		{"", nil, 10, 10, 0 + 1 + 2 + 3 + 4 + 100*5 + 10, []string{"chat", "llm.primary"}, 10},
		{"?model=chat", "chat", 5, 5, 510, []string{"chat"}, 10},
		{"?model=%20LLM.Primary%20", "llm.primary", 5, 5, 10, []string{"llm.primary"}, 10},
		{"?model=chat&limit=2", "chat", 5, 2, 103 + 104, []string{"chat"}, 10},
		{"?limit=3", nil, 10, 3, 103 + 4 + 104, []string{"chat", "llm.primary"}, 10},
		{"?model=idle", "idle", 0, 0, 0, nil, 10},
		{"?model=", nil, 10, 10, 520, []string{"chat", "llm.primary"}, 10},
	}
	for _, tc := range tests {
		t.Run("q="+tc.query, func(t *testing.T) {
			code, _, body := get(t, view(r.Stats), "/v1/stats"+tc.query)
			if code != 200 {
				t.Fatalf("status %d: %v", code, body)
			}
			if body["model"] != tc.model || body["matching"] != tc.matching || body["count"] != tc.count || body["available"] != tc.available {
				t.Errorf("model %v matching %v count %v available %v", body["model"], body["matching"], body["count"], body["available"])
			}
			if p := body["tokens"].(map[string]any)["prompt"]; p != tc.prompt {
				t.Errorf("prompt tokens %v, want %v", p, tc.prompt)
			}
			routes := body["routes"].(map[string]any)
			if len(routes) != len(tc.wantRoutes) {
				t.Errorf("routes %v, want %v", routes, tc.wantRoutes)
			}
			for _, rt := range tc.wantRoutes {
				if routes[rt] == nil {
					t.Errorf("route %q missing", rt)
				}
			}
		})
	}
}

func TestStatsInvalidQueries(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Aliases: []string{"llm.primary"}})
	tests := []struct {
		name, query string
		status      int
		typ         string
	}{
		{"unknown param", "?window=15m", 400, "invalid_request"},
		{"limit zero", "?limit=0", 400, "invalid_request"},
		{"limit too big", "?limit=10001", 400, "invalid_request"},
		{"limit not a number", "?limit=ten", 400, "invalid_request"},
		{"limit twice", "?limit=1&limit=2", 400, "invalid_request"},
		{"model twice", "?model=llm.primary&model=llm.primary", 400, "invalid_request"},
		{"model with space", "?model=a%20b", 400, "invalid_request"},
		{"model newline", "?model=a%0Ab", 400, "invalid_request"},
		{"bad escape", "?model=%zz", 400, "invalid_request"},
		{"unknown alias", "?model=gpt-4", 404, "model_not_found"},
		{"unknown alias bad limit is 400 first", "?model=gpt-4&limit=0", 400, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := get(t, view(r.Stats), "/v1/stats"+tc.query)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %v", code, tc.status, body)
			}
			if typ := errType(t, body); typ != tc.typ {
				t.Errorf("type %q, want %q", typ, tc.typ)
			}
			// Never reflect the caller's value.
			msg := body["error"].(map[string]any)["message"].(string)
			q, _ := url.ParseQuery(strings.TrimPrefix(tc.query, "?"))
			for _, vs := range q {
				for _, v := range vs {
					if len(v) > 2 && strings.Contains(msg, v) {
						t.Errorf("message %q echoes %q", msg, v)
					}
				}
			}
		})
	}
}

func TestRequestLookup(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Capacity: 4})
	old := served("llm.primary", "qwen-a", 1, 1, 1)
	old.RequestID = "req_dup"
	r.Record(old)
	newer := served("llm.primary", "qwen-b", 2, 2, 2)
	newer.RequestID = "req_dup"
	r.Record(newer)
	other := served("llm.primary", "qwen-a", 3, 3, 3)
	other.RequestID = "req.other:1"
	r.Record(other)
	r.Record(failed("llm.primary", "qwen-a", "unavailable")) // no id

	tests := []struct {
		name, id   string
		status     int
		wantPrompt float64
	}{
		{"newest of duplicates", "req_dup", 200, 2},
		{"id with dot and colon", "req.other:1", 200, 3},
		{"unknown id", "req_missing", 404, 0},
		{"invalid id", "bad id", 404, 0},
		{"empty id", "", 404, 0},
		{"dash renders missing, not an id", "-", 404, 0},
		{"too long", string(make([]byte, 129)), 404, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := view(func(string) ([]byte, error) { return r.Request(tc.id) })
			code, _, body := get(t, h, "/v1/requests/x")
			if code != tc.status {
				t.Fatalf("status %d, want %d", code, tc.status)
			}
			if code != 200 {
				if typ := errType(t, body); typ != "not_found" || body["error"].(map[string]any)["message"] != "request record not found" {
					t.Errorf("error %v", body)
				}
				return
			}
			if body["object"] != "router_request" || body["scope"] != "current_decision_log_buffer" {
				t.Errorf("envelope %v", body)
			}
			rec := body["record"].(map[string]any)
			if rec["total_prompt_tokens"] != tc.wantPrompt || rec["request_id"] != tc.id {
				t.Errorf("record %v", rec)
			}
			if _, ok := rec["unix_ts"]; ok {
				t.Error("view leaks unix_ts")
			}
		})
	}
	// Evicted records are gone.
	for i := range 4 {
		r.Record(served("llm.primary", "qwen-a", i, 0, 1))
	}
	h := view(func(string) ([]byte, error) { return r.Request("req_dup") })
	if code, _, _ := get(t, h, "/v1/requests/req_dup"); code != 404 {
		t.Errorf("evicted record still found: %d", code)
	}
}
