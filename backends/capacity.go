package backends

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
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

// parseLive reads Prometheus text exposition lines: `name{labels} value`.
func parseLive(body []byte, model string) Live {
	l := Live{Status: "ok"}
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), metricsMaxBytes)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, ok := splitSample(line)
		if !ok {
			return Live{Status: "unavailable", Reason: "metrics_malformed"}
		}
		field, known := liveMetric[name]
		if !known {
			continue
		}
		if model != "" {
			if m, has := labelValue(labels, "model_name"); has && m != model {
				continue
			}
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return Live{Status: "unavailable", Reason: "metrics_malformed"}
		}
		p := field(&l)
		if *p == nil {
			*p = new(float64)
		}
		**p += v
		found = true
	}
	if sc.Err() != nil {
		return Live{Status: "unavailable", Reason: "metrics_malformed"}
	}
	if !found {
		return Live{Status: "unavailable", Reason: "metrics_missing"}
	}
	return l
}

// splitSample splits a sample line into name, raw label text and value
// (timestamps after the value are ignored).
func splitSample(line string) (name, labels, value string, ok bool) {
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return "", "", "", false
		}
		name, labels = line[:i], line[i+1:j]
		line = strings.TrimSpace(line[j+1:])
	} else {
		f := strings.Fields(line)
		if len(f) < 2 {
			return "", "", "", false
		}
		name, line = f[0], strings.Join(f[1:], " ")
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", "", "", false
	}
	return name, labels, f[0], true
}

// labelValue finds key="value" in a label list (values may contain
// escaped quotes and commas).
func labelValue(labels, key string) (string, bool) {
	for labels != "" {
		eq := strings.IndexByte(labels, '=')
		if eq < 0 || eq+1 >= len(labels) || labels[eq+1] != '"' {
			return "", false
		}
		k := strings.TrimSpace(labels[:eq])
		rest := labels[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				switch rest[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(rest[i])
				}
				continue
			}
			val.WriteByte(rest[i])
		}
		if k == key {
			return val.String(), true
		}
		if i+1 >= len(rest) {
			return "", false
		}
		labels = strings.TrimLeft(rest[i+1:], ", ")
	}
	return "", false
}
