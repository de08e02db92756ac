package fakeserve

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// ttftBuckets are vLLM's time-to-first-token histogram bounds, in seconds.
var ttftBuckets = [...]float64{
	0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
	1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560,
}

// histogram is a lock-free Prometheus-style histogram of durations.
type histogram struct {
	counts   [len(ttftBuckets)]atomic.Int64 // per bucket, not cumulative
	count    atomic.Int64
	sumNanos atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	secs := d.Seconds()
	for i, le := range ttftBuckets {
		if secs <= le {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumNanos.Add(int64(d))
}

// serveMetrics answers GET /metrics with vLLM's gauge and histogram names.
// vllm:kv_cache_usage_perc is faked as 1% per request in flight (at most 1).
func (s *Server) serveMetrics(w http.ResponseWriter) {
	p := s.plan.Load()
	label := `{model_name="` + p.modelLabel + `"}`
	running := s.inFlight.Load()

	var b []byte
	metric := func(name, typ, help string, value float64) {
		b = append(b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"+name+label+" "...)
		b = appendFloat(b, value)
		b = append(b, '\n')
	}
	metric("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", float64(running))
	metric("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", 0)
	metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", min(1, float64(running)/100))
	metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 0)
	metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", float64(s.promptTokens.Load()))
	metric("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", float64(s.generationTokens.Load()))

	const ttft = "vllm:time_to_first_token_seconds"
	b = append(b, "# HELP "+ttft+" Histogram of time to first token in seconds.\n# TYPE "+ttft+" histogram\n"...)
	var cum int64
	for i, le := range ttftBuckets {
		cum += s.ttft.counts[i].Load()
		b = append(b, ttft+`_bucket{le="`...)
		b = appendFloat(b, le)
		b = append(b, `",model_name="`+p.modelLabel+`"} `...)
		b = strconv.AppendInt(b, cum, 10)
		b = append(b, '\n')
	}
	// Read count after the buckets so +Inf is never below a finite bucket.
	count := s.ttft.count.Load()
	b = append(b, ttft+`_bucket{le="+Inf",model_name="`+p.modelLabel+`"} `...)
	b = strconv.AppendInt(b, max(count, cum), 10)
	b = append(b, "\n"+ttft+"_count"+label+" "...)
	b = strconv.AppendInt(b, max(count, cum), 10)
	b = append(b, "\n"+ttft+"_sum"+label+" "...)
	b = appendFloat(b, time.Duration(s.ttft.sumNanos.Load()).Seconds())
	b = append(b, '\n')

	w.Header()["Content-Type"] = hdrMetrics
	w.WriteHeader(http.StatusOK)
	w.Write(b) //nolint:errcheck // the client may be gone
}

func appendFloat(b []byte, f float64) []byte {
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
