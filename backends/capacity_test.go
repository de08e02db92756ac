package backends_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLiveCapacity(t *testing.T) {
	tests := []struct {
		name, body               string
		status                   int
		wantStatus, wantReason   string
		running, waiting, kvUsed float64
		preemptions              float64
	}{
		{name: "counters as Python's prometheus_client writes them", status: 200, wantStatus: "ok", running: 1, preemptions: 7, body: `# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 7.0
# HELP vllm:num_preemptions_created Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_created gauge
vllm:num_preemptions_created{engine="0",model_name="m"} 1.7e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 1.0
`},
		{name: "vLLM, other models ignored", status: 200, wantStatus: "ok", running: 3, waiting: 1, kvUsed: 0.25, body: `# HELP vllm:num_requests_running x
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
vllm:num_requests_running{model_name="other"} 9.0
vllm:num_requests_waiting{model_name="m"} 1
vllm:kv_cache_usage_perc{model_name="m"} 0.25 1700000000000
`},
		{name: "SGLang names", status: 200, wantStatus: "ok", running: 4, waiting: 2, kvUsed: 0.5, body: `sglang:num_running_reqs{model_name="m",tp_rank="0"} 4
sglang:num_queue_reqs{model_name="m"} 2
sglang:token_usage{model_name="m"} 0.5
`},
		{name: "label values with escapes", status: 200, wantStatus: "ok", running: 1, body: `vllm:num_requests_running{note="a \"quoted\", b",model_name="m"} 1` + "\n"},
		{name: "no known metric", status: 200, wantStatus: "unavailable", wantReason: "metrics_missing", body: "go_goroutines 12\n"},
		{name: "garbage", status: 200, wantStatus: "unavailable", wantReason: "metrics_malformed", body: "vllm:num_requests_running{model_name=\"m\"} lots\n"},
		{name: "HTTP error", status: 500, wantStatus: "unavailable", wantReason: "metrics_http"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			tier, _ := newSet(t, srv.URL+"/v1", "m").Lookup("chat")
			l := tier.LiveCapacity(t.Context())
			if l.Status != tc.wantStatus || l.Reason != tc.wantReason {
				t.Fatalf("got %s/%s, want %s/%s", l.Status, l.Reason, tc.wantStatus, tc.wantReason)
			}
			if l.Status != "ok" {
				return
			}
			get := func(p *float64) float64 {
				if p == nil {
					return 0
				}
				return *p
			}
			if get(l.RequestsRunning) != tc.running || get(l.RequestsWaiting) != tc.waiting || get(l.KVCacheUsage) != tc.kvUsed || get(l.PreemptionsTotal) != tc.preemptions {
				t.Errorf("running %v waiting %v kv %v preemptions %v", get(l.RequestsRunning), get(l.RequestsWaiting), get(l.KVCacheUsage), get(l.PreemptionsTotal))
			}
		})
	}
}
