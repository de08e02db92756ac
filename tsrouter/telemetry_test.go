package tsrouter_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestDecisionsAndMetrics: requests leave decision records findable by
// their request id, and /metrics parses with the Prometheus text parser.
func TestDecisionsAndMetrics(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, "max_output_tokens = 100"), routerOpts{token: routerToken})
	auth := []string{"Authorization", "Bearer " + routerToken}

	// The caller's id is kept; without one the router makes one up.
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","max_tokens":500}`, append(auth, "X-Request-Id", "job-42", "X-Anvil-Task-Id", "task.7")...)
	readAll(t, resp)
	if resp.Header.Get("X-Request-Id") != "job-42" {
		t.Errorf("X-Request-Id %q, want the caller's", resp.Header.Get("X-Request-Id"))
	}
	resp = post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":true,"stream_options":{"include_usage":true}}`, auth...)
	readAll(t, resp)
	gen := resp.Header.Get("X-Request-Id")
	if !strings.HasPrefix(gen, "req_") {
		t.Errorf("generated X-Request-Id %q", gen)
	}
	resp = post(t, t.Context(), base+"/v1/chat/completions", `{"model":"nope"}`, auth...)
	readAll(t, resp)

	get := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+routerToken)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r.StatusCode, readAll(t, r)
	}
	s, body := get("/v1/requests/job-42")
	var one struct {
		Record map[string]any `json:"record"`
	}
	json.Unmarshal([]byte(body), &one)
	if s != 200 || one.Record["route"] != "chat" || one.Record["task_id"] != "task.7" || one.Record["served_tier"] != "local-a" {
		t.Errorf("request record: %d %s", s, body)
	}
	if attempts, _ := one.Record["attempts"].([]any); len(attempts) != 1 || attempts[0].(map[string]any)["reason"] != "served_output_clamped" {
		t.Errorf("attempts: %v", one.Record["attempts"])
	}
	s, body = get("/v1/requests/" + gen)
	if s != 200 || !strings.Contains(body, `"completion_tokens"`) || !strings.Contains(body, `"ttft_ms":`) {
		t.Errorf("streamed request record (with its ttft_ms): %d %s", s, body)
	}
	if _, body := get("/v1/requests/job-42"); strings.Contains(body, `"ttft_ms"`) {
		t.Errorf("a non-streamed record has a ttft_ms: %s", body)
	}
	s, body = get("/v1/decisions?limit=10")
	var dec struct{ Count int }
	json.Unmarshal([]byte(body), &dec)
	if s != 200 || dec.Count != 2 {
		t.Errorf("decisions (unknown aliases are not recorded): %d %s", s, body)
	}
	s, body = get("/v1/stats?model=chat")
	var st struct {
		TTFT struct {
			Samples int      `json:"samples"`
			P50     *float64 `json:"p50"`
			P95     *float64 `json:"p95"`
		} `json:"ttft_ms"`
	}
	if s != 200 || json.Unmarshal([]byte(body), &st) != nil || st.TTFT.Samples != 1 || st.TTFT.P50 == nil || *st.TTFT.P50 <= 0 || st.TTFT.P95 == nil {
		t.Errorf("stats (the one stream's TTFT summarized): %d %s", s, body)
	}

	s, body = get("/metrics")
	if s != 200 {
		t.Fatalf("metrics: %d", s)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	for _, name := range []string{"anvil_router_requests_total", "anvil_router_upstream_latency_seconds", "anvil_router_overhead_seconds",
		"anvil_router_time_to_first_token_seconds", "anvil_router_in_flight", "anvil_router_model_loaded", "anvil_router_decision_buffer_requests"} {
		if families[name] == nil {
			t.Errorf("metrics lack %s", name)
		}
	}
	for _, m := range families["anvil_router_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetValue() == "nope" {
				t.Error("a caller's unknown alias became a label value")
			}
		}
	}
}

func TestDecisionsNeedAdmin(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	for _, p := range []string{"/v1/decisions", "/v1/stats", "/v1/requests/abc"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != 404 {
			t.Errorf("%s without any admin credential: %d, want 404", p, resp.StatusCode)
		}
	}
}
