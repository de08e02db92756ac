package backends

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	prommodel "github.com/prometheus/common/model"
)

// Live is what a serve's /metrics says about its load right now. Nil
// fields were not reported.
type Live struct {
	Status           string // "ok" or "unavailable"
	Reason           string // why unavailable: metrics_http, _transport, _oversized, _malformed, _missing
	RequestsRunning  *float64
	RequestsWaiting  *float64
	KVCacheUsage     *float64 // fraction 0..1
	PreemptionsTotal *float64
	MMCacheQueries   *float64
	MMCacheHits      *float64
}

const (
	metricsTimeout  = time.Second
	metricsMaxBytes = 1 << 20
)

// liveMetric maps the serves' metric names (vLLM and SGLang) onto Live.
var liveMetric = map[string]func(*Live) **float64{
	"vllm:num_requests_running":   func(l *Live) **float64 { return &l.RequestsRunning },
	"vllm:num_requests_waiting":   func(l *Live) **float64 { return &l.RequestsWaiting },
	"vllm:kv_cache_usage_perc":    func(l *Live) **float64 { return &l.KVCacheUsage },
	"vllm:gpu_cache_usage_perc":   func(l *Live) **float64 { return &l.KVCacheUsage },
	"vllm:num_preemptions_total":  func(l *Live) **float64 { return &l.PreemptionsTotal },
	"vllm:mm_cache_queries_total": func(l *Live) **float64 { return &l.MMCacheQueries },
	"vllm:mm_cache_hits_total":    func(l *Live) **float64 { return &l.MMCacheHits },
	"sglang:num_running_reqs":     func(l *Live) **float64 { return &l.RequestsRunning },
	"sglang:num_queue_reqs":       func(l *Live) **float64 { return &l.RequestsWaiting },
	"sglang:token_usage":          func(l *Live) **float64 { return &l.KVCacheUsage },
}

// LiveCapacity scrapes the serve's /metrics (1 s, at most 1 MiB, the tier
// key if any, no proxy, no redirects) and sums the samples whose
// model_name is the tier's model.
func (t *Tier) LiveCapacity(ctx context.Context) Live {
	u, err := url.Parse(t.BaseURL)
	if err != nil {
		return Live{Status: "unavailable", Reason: "metrics_transport"}
	}
	ctx, cancel := context.WithTimeout(ctx, metricsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.Scheme+"://"+u.Host+"/metrics", nil)
	if err != nil {
		return Live{Status: "unavailable", Reason: "metrics_transport"}
	}
	if t.authValue != "" {
		req.Header.Set(t.authHeader, t.authValue)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return Live{Status: "unavailable", Reason: "metrics_transport"}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Live{Status: "unavailable", Reason: "metrics_http"}
	}
	body, err := readAllLimit(resp.Body, resp.ContentLength, metricsMaxBytes)
	if errors.Is(err, errTooLarge) {
		return Live{Status: "unavailable", Reason: "metrics_oversized"}
	}
	if err != nil {
		return Live{Status: "unavailable", Reason: "metrics_transport"}
	}
	return parseLive(body, t.Model)
}

// parseLive reads the Prometheus text exposition format and sums, per
// known metric, the samples whose model_name is model (samples without a
// model_name count for every model). Gauges, counters and untyped samples
// are read; a body the format's parser refuses is metrics_malformed.
func parseLive(body []byte, model string) Live {
	parser := expfmt.NewTextParser(prommodel.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return Live{Status: "unavailable", Reason: "metrics_malformed"}
	}
	l := Live{Status: "ok"}
	found := false
	for name, fam := range families {
		field, known := liveMetric[name]
		if !known {
			continue
		}
		for _, m := range fam.GetMetric() {
			if model != "" {
				if v, has := labelValue(m, "model_name"); has && v != model {
					continue
				}
			}
			v, ok := sampleValue(m)
			if !ok {
				continue
			}
			p := field(&l)
			if *p == nil {
				*p = new(float64)
			}
			**p += v
			found = true
		}
	}
	if !found {
		return Live{Status: "unavailable", Reason: "metrics_missing"}
	}
	return l
}

// sampleValue is the value of a gauge, counter or untyped sample.
func sampleValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

// labelValue finds a label of the sample.
func labelValue(m *dto.Metric, name string) (string, bool) {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue(), true
		}
	}
	return "", false
}
