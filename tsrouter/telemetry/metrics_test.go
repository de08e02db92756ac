package telemetry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

func ptr(f float64) *float64 { return &f }

// Strings a caller could send as a model; none may ever become a label.
var callerAliases = []string{"gpt-4o", `evil"} 1\nanvil_router_in_flight 99`, "LLM.PRIMARY-x", "chat\x00"}

func newMetrics(t *testing.T, gauges func() []telemetry.TierGauge) (*telemetry.Recorder, *telemetry.Metrics) {
	t.Helper()
	rec := newRecorder(t, telemetry.Options{Aliases: []string{"llm.primary", "chat"}})
	m, err := telemetry.NewMetrics(rec, telemetry.MetricsOptions{
		Tiers:      []string{"qwen-a", "qwen-b"},
		TierGauges: gauges,
		Start:      time.Unix(1_700_000_000, 500_000_000),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec, m
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, m *telemetry.Metrics, query string) (int, map[string]*dto.MetricFamily, string) {
	t.Helper()
	body, contentType, err := m.Exposition(strings.TrimPrefix(query, "?"))
	if err != nil {
		var qe *telemetry.QueryError
		if !errors.As(err, &qe) {
			t.Fatalf("exposition: %v", err)
		}
		b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": qe.Type, "message": qe.Message}})
		return qe.Status, nil, string(b)
	}
	if contentType != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", contentType)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	return http.StatusOK, fams, string(body)
}

// sample finds the metric of family name whose labels are exactly labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

func TestMetricsExposition(t *testing.T) {
	rec, m := newMetrics(t, func() []telemetry.TierGauge {
		return []telemetry.TierGauge{
			{Alias: "llm.primary", Tier: "qwen-a", Loaded: true, ContextLimit: ptr(32768), KVCacheCapacity: ptr(571950),
				ImageLimit: ptr(1), RequestsRunning: ptr(1), RequestsWaiting: ptr(0), KVCacheUsage: ptr(0.25)},
			{Alias: "chat", Tier: "qwen-b", Loaded: false, ContextLimit: ptr(8192)},
			{Alias: "chat", Tier: "qwen-b", Loaded: true}, // duplicate: ignored, must not break the scrape
		}
	})
	rec.Record(served("llm.primary", "qwen-a", 100, 20, 50))
	rec.Record(failed("chat", "qwen-b", "unavailable"))
	for _, a := range callerAliases {
		rec.Record(served(a, "qwen-a", 1, 1, 1)) // a handler bug must not leak either
	}
	m.ObserveRequest("llm.primary", "qwen-a", 200, 120*time.Millisecond, 100*time.Millisecond, 40*time.Millisecond)
	m.ObserveRequest("LLM.Primary", "qwen-a", 200, 10*time.Millisecond, 9*time.Millisecond, 0)
	m.ObserveRequest("chat", "qwen-b", 503, time.Millisecond, 0, 0)
	for _, a := range callerAliases {
		m.ObserveRequest(a, "", 404, time.Millisecond, 0, 0)
		m.ObserveRequest("chat", a, 200, time.Millisecond, time.Millisecond, time.Millisecond) // bogus tier
	}
	m.ObserveRequest("", "", 999, time.Millisecond, 0, 0)
	m.InFlight(2)
	m.InFlight(-1)
	m.SetQueueDepth("qwen-a", 3)
	m.SetQueueDepth("nope", 5)
	m.SetTierReady("qwen-a", true)
	m.SetTierReady("qwen-b", false)
	m.SetTierReady("nope", true)

	code, fams, text := scrape(t, m, "")
	if code != 200 {
		t.Fatalf("status %d: %s", code, text)
	}

	types := map[string]dto.MetricType{
		"anvil_router_requests_total":                     dto.MetricType_COUNTER,
		"anvil_router_upstream_latency_seconds":           dto.MetricType_HISTOGRAM,
		"anvil_router_time_to_first_token_seconds":        dto.MetricType_HISTOGRAM,
		"anvil_router_overhead_seconds":                   dto.MetricType_HISTOGRAM,
		"anvil_router_in_flight":                          dto.MetricType_GAUGE,
		"anvil_router_queue_depth":                        dto.MetricType_GAUGE,
		"anvil_router_tier_ready":                         dto.MetricType_GAUGE,
		"anvil_router_process_start_time_seconds":         dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_capacity":           dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_requests":           dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_prompt_tokens":      dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_completion_tokens":  dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_request_bytes":      dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_response_bytes":     dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_latency_ms_average": dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_latency_ms_p50":     dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_latency_ms_p95":     dto.MetricType_GAUGE,
		"anvil_router_decision_buffer_latency_samples":    dto.MetricType_GAUGE,
		"anvil_router_model_loaded":                       dto.MetricType_GAUGE,
		"anvil_router_model_context_limit_tokens":         dto.MetricType_GAUGE,
		"anvil_router_model_kv_cache_capacity_tokens":     dto.MetricType_GAUGE,
		"anvil_router_model_image_limit":                  dto.MetricType_GAUGE,
		"anvil_router_model_requests_running":             dto.MetricType_GAUGE,
		"anvil_router_model_requests_waiting":             dto.MetricType_GAUGE,
		"anvil_router_model_kv_cache_usage_fraction":      dto.MetricType_GAUGE,
	}
	for name, typ := range types {
		f := fams[name]
		if f == nil {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is %v, want %v", name, f.GetType(), typ)
		}
	}
	if len(fams) != len(types) {
		t.Errorf("%d families, want %d", len(fams), len(types))
	}

	tests := []struct {
		name   string
		family string
		labels map[string]string
		want   float64 // -1: must be absent
	}{
		{"served alias", "anvil_router_requests_total", map[string]string{"alias": "llm.primary", "tier": "qwen-a", "status": "200"}, 2},
		{"exhausted", "anvil_router_requests_total", map[string]string{"alias": "chat", "tier": "qwen-b", "status": "503"}, 1},
		{"caller aliases folded", "anvil_router_requests_total", map[string]string{"alias": "unknown", "tier": "", "status": "404"}, float64(len(callerAliases))},
		{"bogus tiers folded", "anvil_router_requests_total", map[string]string{"alias": "chat", "tier": "unknown", "status": "200"}, float64(len(callerAliases))},
		{"out of range status", "anvil_router_requests_total", map[string]string{"alias": "", "tier": "", "status": "0"}, 1},
		{"upstream observed", "anvil_router_upstream_latency_seconds", map[string]string{"tier": "qwen-a"}, 2},
		{"upstream zero not observed", "anvil_router_upstream_latency_seconds", map[string]string{"tier": "qwen-b"}, 0},
		{"ttft only streamed", "anvil_router_time_to_first_token_seconds", map[string]string{"tier": "qwen-a"}, 1},
		{"overhead every request", "anvil_router_overhead_seconds", nil, float64(3 + 2*len(callerAliases) + 1)},
		{"in flight", "anvil_router_in_flight", nil, 1},
		{"queue depth", "anvil_router_queue_depth", map[string]string{"tier": "qwen-a"}, 3},
		{"queue depth idle tier", "anvil_router_queue_depth", map[string]string{"tier": "qwen-b"}, 0},
		{"queue depth unknown tier ignored", "anvil_router_queue_depth", map[string]string{"tier": "nope"}, -1},
		{"ready", "anvil_router_tier_ready", map[string]string{"tier": "qwen-a"}, 1},
		{"not ready", "anvil_router_tier_ready", map[string]string{"tier": "qwen-b"}, 0},
		{"ready unknown tier ignored", "anvil_router_tier_ready", map[string]string{"tier": "nope"}, -1},
		{"start time", "anvil_router_process_start_time_seconds", nil, 1_700_000_000.5},
		{"capacity", "anvil_router_decision_buffer_capacity", nil, telemetry.DefaultCapacity},
		{"buffer total", "anvil_router_decision_buffer_requests", map[string]string{"model": "", "outcome": "total"}, float64(2 + len(callerAliases))},
		{"buffer failed", "anvil_router_decision_buffer_requests", map[string]string{"model": "chat", "outcome": "failed"}, 1},
		{"buffer unknown route", "anvil_router_decision_buffer_requests", map[string]string{"model": "unknown", "outcome": "succeeded"}, float64(len(callerAliases))},
		{"buffer prompt", "anvil_router_decision_buffer_prompt_tokens", map[string]string{"model": "llm.primary"}, 100},
		{"buffer p95", "anvil_router_decision_buffer_latency_ms_p95", map[string]string{"model": "llm.primary"}, 50},
		{"buffer no samples is 0", "anvil_router_decision_buffer_latency_ms_p50", map[string]string{"model": "chat"}, 0},
		{"kv usage", "anvil_router_model_kv_cache_usage_fraction", map[string]string{"model": "llm.primary", "tier": "qwen-a"}, 0.25},
		{"loaded false", "anvil_router_model_loaded", map[string]string{"model": "chat", "tier": "qwen-b"}, 0},
		{"present value", "anvil_router_model_context_limit_tokens", map[string]string{"model": "chat", "tier": "qwen-b"}, 8192},
		{"absent value left out", "anvil_router_model_kv_cache_usage_fraction", map[string]string{"model": "chat", "tier": "qwen-b"}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sample(fams, tc.family, tc.labels)
			switch {
			case tc.want == -1 && s != nil:
				t.Errorf("present: %v", s)
			case tc.want != -1 && s == nil:
				t.Errorf("missing %s%v", tc.family, tc.labels)
			case s != nil && value(s) != tc.want:
				t.Errorf("value %v, want %v", value(s), tc.want)
			}
		})
	}

	// No label value anywhere carries a caller's string.
	for name, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				for _, a := range callerAliases {
					if strings.Contains(lp.GetValue(), a) || strings.EqualFold(lp.GetValue(), a) {
						t.Errorf("%s label %s=%q carries caller string %q", name, lp.GetName(), lp.GetValue(), a)
					}
				}
			}
		}
	}
	if strings.Contains(text, "gpt-4o") || strings.Contains(text, "evil") {
		t.Error("caller string in the exposition text")
	}
}

func TestMetricsQuery(t *testing.T) {
	rec, m := newMetrics(t, nil)
	rec.Record(served("llm.primary", "qwen-a", 100, 20, 50))
	rec.Record(served("chat", "qwen-b", 7, 1, 5))
	rec.Record(served("chat", "qwen-b", 9, 1, 5))
	tests := []struct {
		query  string
		status int
		total  float64 // decision_buffer_requests{model=""} total
		routes int
	}{
		{"", 200, 3, 2},
		{"?model=chat", 200, 2, 1},
		{"?model=CHAT&limit=1", 200, 1, 1},
		{"?limit=1", 200, 1, 1},
		{"?model=gpt-4o", 404, 0, 0},
		{"?limit=0", 400, 0, 0},
		{"?name[]=x", 400, 0, 0},
	}
	for _, tc := range tests {
		t.Run("q="+tc.query, func(t *testing.T) {
			code, fams, body := scrape(t, m, tc.query)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if code != 200 {
				if !strings.HasPrefix(body, `{"error":{`) {
					t.Errorf("body %s", body)
				}
				return
			}
			s := sample(fams, "anvil_router_decision_buffer_requests", map[string]string{"model": "", "outcome": "total"})
			if s == nil || value(s) != tc.total {
				t.Errorf("total %v, want %v", s, tc.total)
			}
			// 3 outcomes per row: totals row plus one per route.
			if n := len(fams["anvil_router_decision_buffer_requests"].GetMetric()); n != 3*(1+tc.routes) {
				t.Errorf("%d rows, want %d", n, 3*(1+tc.routes))
			}
		})
	}
}

func TestMetricsLabelEscaping(t *testing.T) {
	// Aliases from config can hold any TOML string; the library escapes
	// them so the exposition still parses back to the same values.
	weird := "a\"b\\c\nd"
	_, m := newMetrics(t, func() []telemetry.TierGauge {
		return []telemetry.TierGauge{{Alias: weird, Tier: "qwen-a", Loaded: true}}
	})
	_, fams, _ := scrape(t, m, "")
	if s := sample(fams, "anvil_router_model_loaded", map[string]string{"model": weird, "tier": "qwen-a"}); s == nil || value(s) != 1 {
		t.Errorf("escaped label did not round-trip: %v", fams["anvil_router_model_loaded"])
	}
}

func TestNewMetricsNeedsRecorder(t *testing.T) {
	if _, err := telemetry.NewMetrics(nil, telemetry.MetricsOptions{}); err == nil {
		t.Error("nil Recorder accepted")
	}
}

func TestMetricsConcurrent(t *testing.T) {
	rec, m := newMetrics(t, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 300 {
				m.InFlight(1)
				m.ObserveRequest([]string{"llm.primary", "chat", "x"}[j%3], "qwen-a", 200+j%3, time.Millisecond, time.Microsecond, 0)
				m.SetQueueDepth("qwen-b", j)
				m.SetTierReady("qwen-a", j%2 == 0)
				rec.Record(served("chat", "qwen-b", i, j, 1))
				m.InFlight(-1)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if code, _, body := scrape(t, m, ""); code != 200 {
				t.Errorf("scrape %d: %s", code, body)
			}
		}
	})
	wg.Wait()
	_, fams, _ := scrape(t, m, "")
	var total float64
	for _, mt := range fams["anvil_router_requests_total"].GetMetric() {
		total += value(mt)
	}
	if total != 1200 {
		t.Errorf("requests_total sums to %v, want 1200", total)
	}
	if s := sample(fams, "anvil_router_in_flight", nil); value(s) != 0 {
		t.Errorf("in flight %v", value(s))
	}
}
