package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TierGauge is the live state of one alias → tier binding, read at scrape
// time. Nil fields are unknown and are left out of the exposition rather
// than reported as 0, which would read as a real measurement.
type TierGauge struct {
	Alias, Tier string
	Loaded      bool

	ContextLimit    *float64 // tokens
	KVCacheCapacity *float64 // tokens
	ImageLimit      *float64 // images per request

	RequestsRunning *float64
	RequestsWaiting *float64
	KVCacheUsage    *float64 // fraction 0..1
}

// MetricsOptions configures NewMetrics.
type MetricsOptions struct {
	// Tiers are the configured tier ids. Any other tier is labelled
	// "unknown", so label cardinality stays bounded by the config.
	Tiers []string
	// TierGauges, if set, is called on every scrape for the per-tier
	// gauges. Its aliases and tiers must come from the config.
	TierGauges func() []TierGauge
	// Start is the process start time; time.Now() if zero.
	Start time.Time
}

// Histogram buckets, in seconds. Upstream time covers whole generations
// (up to minutes); time to first token is usually sub-second but a cold
// or queued serve takes tens of seconds; router overhead should be well
// under a millisecond, so its buckets start at 50µs.
var (
	upstreamBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	ttftBuckets     = []float64{.01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60}
	overheadBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
)

// statusLabels holds the label value of every HTTP status, built once so
// ObserveRequest does not format a number per request.
var statusLabels = func() (s [600]string) {
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusLabel(code int) string {
	if code < 100 || code >= len(statusLabels) {
		return "0"
	}
	return statusLabels[code]
}

// Metrics is the router's /metrics: request counters and latency
// histograms observed by the handler, gauges it sets, and the Python
// router's gauges computed from the decision ring at scrape time. It has
// its own registry, so nothing else in the process leaks into /metrics.
type Metrics struct {
	rec   *Recorder
	reg   *prometheus.Registry
	tiers map[string]struct{}

	requests *prometheus.CounterVec
	// counters caches requests children: WithLabelValues hashes all
	// labels and may allocate; a map hit under a read lock does neither.
	countersMu sync.RWMutex
	counters   map[counterKey]prometheus.Counter

	// Per-tier observers and gauges, created up front for every
	// configured tier (plus "unknown") and read without locks.
	upstream   map[string]prometheus.Observer
	ttft       map[string]prometheus.Observer
	queueDepth map[string]prometheus.Gauge
	overhead   prometheus.Histogram
	inFlight   prometheus.Gauge
	tierReady  *prometheus.GaugeVec

	// Guardrails (guardmetrics.go).
	guardVerdicts *prometheus.CounterVec
	guardSeconds  *prometheus.HistogramVec
}

type counterKey struct {
	alias, tier, status string
}

// NewMetrics builds the metrics of one router. rec supplies the decision
// ring and the configured aliases.
func NewMetrics(rec *Recorder, opts MetricsOptions) (*Metrics, error) {
	if rec == nil {
		return nil, errors.New("telemetry: NewMetrics needs a Recorder")
	}
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	m := &Metrics{
		rec:   rec,
		reg:   prometheus.NewRegistry(),
		tiers: map[string]struct{}{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anvil_router_requests_total",
			Help: "Requests answered, by configured alias, tier and HTTP status.",
		}, []string{"alias", "tier", "status"}),
		counters:   map[counterKey]prometheus.Counter{},
		upstream:   map[string]prometheus.Observer{},
		ttft:       map[string]prometheus.Observer{},
		queueDepth: map[string]prometheus.Gauge{},
		overhead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "anvil_router_overhead_seconds",
			Help:    "Time the router itself added to a request: total minus upstream time.",
			Buckets: overheadBuckets,
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anvil_router_in_flight",
			Help: "Requests being handled now, streams included.",
		}),
		tierReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "anvil_router_tier_ready",
			Help: "1 if the tier's last readiness check passed, else 0.",
		}, []string{"tier"}),
	}
	upstream := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "anvil_router_upstream_latency_seconds",
		Help:    "Time spent waiting on the serve, from sending the request to the end of its response.",
		Buckets: upstreamBuckets,
	}, []string{"tier"})
	ttft := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "anvil_router_time_to_first_token_seconds",
		Help:    "Time from receiving a streamed request to relaying its first token.",
		Buckets: ttftBuckets,
	}, []string{"tier"})
	queue := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "anvil_router_queue_depth",
		Help: "Requests waiting for a tier's concurrency slot.",
	}, []string{"tier"})
	for _, t := range opts.Tiers {
		m.tiers[t] = struct{}{}
	}
	for _, t := range slices.Concat(opts.Tiers, []string{"unknown"}) {
		m.upstream[t] = upstream.WithLabelValues(t)
		m.ttft[t] = ttft.WithLabelValues(t)
		if _, ok := m.tiers[t]; ok {
			m.queueDepth[t] = queue.WithLabelValues(t)
		}
	}

	start := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "anvil_router_process_start_time_seconds",
		Help: "Unix time the router process started; the buffer gauges reset with it.",
	})
	start.Set(float64(opts.Start.UnixMilli()) / 1e3)
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "anvil_router_decision_buffer_capacity",
		Help: "Maximum records the decision ring buffer retains.",
	})
	capacity.Set(float64(rec.Capacity()))

	m.newGuardMetrics()
	cs := []prometheus.Collector{m.requests, upstream, ttft, m.overhead, m.inFlight, queue, m.tierReady, start, capacity, m.guardVerdicts, m.guardSeconds}
	if opts.TierGauges != nil {
		cs = append(cs, tierCollector(opts.TierGauges))
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// aliasLabel bounds the alias label to the configured aliases and the
// purpose routes: a caller's model string never becomes a label value.
func (m *Metrics) aliasLabel(alias string) string {
	if alias == "" {
		return ""
	}
	return m.rec.boundRoute(alias)
}

func (m *Metrics) tierLabel(tier string) string {
	if _, ok := m.tiers[tier]; ok || tier == "" {
		return tier
	}
	return "unknown"
}

// ObserveRequest counts one answered request. alias is the route as the
// handler resolved it ("" before a model was known), tier the tier that
// handled it ("" if none), status the HTTP status sent. total is the whole
// handling time, upstream the part spent waiting on the serve, ttft the
// time to the first relayed token (0: not streamed, or nothing relayed).
func (m *Metrics) ObserveRequest(alias, tier string, status int, total, upstream, ttft time.Duration) {
	tier = m.tierLabel(tier)
	key := counterKey{m.aliasLabel(alias), tier, statusLabel(status)}
	m.countersMu.RLock()
	c, ok := m.counters[key]
	m.countersMu.RUnlock()
	if !ok {
		c = m.requests.WithLabelValues(key.alias, key.tier, key.status)
		m.countersMu.Lock()
		m.counters[key] = c
		m.countersMu.Unlock()
	}
	c.Inc()

	if tier != "" {
		if upstream > 0 {
			m.upstream[tier].Observe(upstream.Seconds())
		}
		if ttft > 0 {
			m.ttft[tier].Observe(ttft.Seconds())
		}
	}
	m.overhead.Observe(max(total-upstream, 0).Seconds())
}

// InFlight adds delta (+1 when a request starts, -1 when it ends).
func (m *Metrics) InFlight(delta int) { m.inFlight.Add(float64(delta)) }

// SetQueueDepth reports how many requests wait for tier. Unknown tiers
// are ignored: a shared "unknown" gauge would be meaningless.
func (m *Metrics) SetQueueDepth(tier string, n int) {
	if _, ok := m.tiers[tier]; ok {
		m.queueDepth[tier].Set(float64(n))
	}
}

// SetTierReady reports the outcome of tier's readiness check. A tier
// appears only once it has been checked: 0 before that would claim a
// failure that never happened.
func (m *Metrics) SetTierReady(tier string, ready bool) {
	if _, ok := m.tiers[tier]; !ok {
		return
	}
	v := 0.0
	if ready {
		v = 1
	}
	m.tierReady.WithLabelValues(tier).Set(v)
}

// Exposition answers GET /metrics in the Prometheus text format 0.0.4:
// the body and its content type. ?model= and ?limit= select the decision
// records behind the buffer gauges, exactly as for /v1/stats.
func (m *Metrics) Exposition(rawQuery string) (body []byte, contentType string, _ error) {
	q, err := m.rec.parseStatsQuery(rawQuery)
	if err != nil {
		return nil, "", err
	}
	// The buffer gauges depend on the query, so they live in a registry
	// of their own for this one scrape.
	scrape := prometheus.NewRegistry()
	if err := scrape.Register(bufferCollector{m.rec, q}); err != nil {
		m.rec.log.Warn("metrics: register buffer gauges", "err", err)
	}
	mfs, err := prometheus.Gatherers{m.reg, scrape}.Gather()
	if err != nil {
		// Gather returns what it could; a partial scrape beats none.
		m.rec.log.Warn("metrics: gather", "err", err)
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, "", fmt.Errorf("metrics: encode %s: %w", mf.GetName(), err)
		}
	}
	return buf.Bytes(), string(format), nil
}

// The Python router's buffer gauges. Gauges, not
// counters: eviction and restarts make them go down.
var (
	bufRequests = prometheus.NewDesc("anvil_router_decision_buffer_requests",
		"Current buffer request count by outcome.", []string{"model", "outcome"}, nil)
	bufGauges = []struct {
		desc  *prometheus.Desc
		value func(*aggregate) float64
	}{
		{bufDesc("prompt_tokens", "Current buffer prompt tokens."), func(a *aggregate) float64 { return float64(a.Tokens.Prompt) }},
		{bufDesc("completion_tokens", "Current buffer completion tokens."), func(a *aggregate) float64 { return float64(a.Tokens.Completion) }},
		{bufDesc("request_bytes", "Current buffer request bytes."), func(a *aggregate) float64 { return float64(a.Bytes.Request) }},
		{bufDesc("response_bytes", "Current buffer response bytes."), func(a *aggregate) float64 { return float64(a.Bytes.Response) }},
		{bufDesc("latency_ms_average", "Current buffer average positive latency milliseconds."), func(a *aggregate) float64 { return orZero(a.LatencyMS.Average) }},
		{bufDesc("latency_ms_p50", "Current buffer nearest-rank p50 positive latency milliseconds."), func(a *aggregate) float64 { return orZero(a.LatencyMS.P50) }},
		{bufDesc("latency_ms_p95", "Current buffer nearest-rank p95 positive latency milliseconds."), func(a *aggregate) float64 { return orZero(a.LatencyMS.P95) }},
		{bufDesc("latency_samples", "Current buffer positive latency sample count."), func(a *aggregate) float64 { return float64(a.LatencyMS.Samples) }},
	}
)

func bufDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("anvil_router_decision_buffer_"+name, help, []string{"model"}, nil)
}

func orZero(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// bufferCollector computes the buffer gauges from the ring at scrape time:
// a model="" row with the totals, then one row per route.
type bufferCollector struct {
	rec *Recorder
	q   statsQuery
}

func (c bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bufRequests
	for _, g := range bufGauges {
		ch <- g.desc
	}
}

func (c bufferCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rec.stats(c.q)
	type row struct {
		model string
		agg   *aggregate
	}
	rows := []row{{"", &s.total}}
	routes := make([]string, 0, len(s.routes))
	for r := range s.routes {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	for _, r := range routes {
		rows = append(rows, row{r, s.routes[r]})
	}
	for _, r := range rows {
		for _, o := range []struct {
			outcome string
			n       int
		}{{"total", r.agg.Requests.Total}, {"succeeded", r.agg.Requests.Succeeded}, {"failed", r.agg.Requests.Failed}} {
			sendGauge(ch, bufRequests, float64(o.n), r.model, o.outcome)
		}
	}
	for _, g := range bufGauges {
		for _, r := range rows {
			sendGauge(ch, g.desc, g.value(r.agg), r.model)
		}
	}
}

// sendGauge drops a sample whose labels the library refuses (invalid
// UTF-8) instead of panicking inside a scrape.
func sendGauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...); err == nil {
		ch <- m
	}
}

// The per-tier gauges of the Python router, labelled {model=alias,tier=id}.
var (
	tierLoaded = tierDesc("model_loaded", "1 if the tier's serve answers as the expected model, else 0.")
	tierFields = []struct {
		desc  *prometheus.Desc
		value func(*TierGauge) *float64
	}{
		{tierDesc("model_context_limit_tokens", "Context window of the tier, tokens."), func(g *TierGauge) *float64 { return g.ContextLimit }},
		{tierDesc("model_kv_cache_capacity_tokens", "KV cache capacity of the serve, tokens."), func(g *TierGauge) *float64 { return g.KVCacheCapacity }},
		{tierDesc("model_image_limit", "Images accepted per request."), func(g *TierGauge) *float64 { return g.ImageLimit }},
		{tierDesc("model_requests_running", "Requests the serve is running."), func(g *TierGauge) *float64 { return g.RequestsRunning }},
		{tierDesc("model_requests_waiting", "Requests queued inside the serve."), func(g *TierGauge) *float64 { return g.RequestsWaiting }},
		{tierDesc("model_kv_cache_usage_fraction", "Fraction of the serve's KV cache in use."), func(g *TierGauge) *float64 { return g.KVCacheUsage }},
	}
)

func tierDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("anvil_router_"+name, help, []string{"model", "tier"}, nil)
}

type tierCollector func() []TierGauge

func (c tierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tierLoaded
	for _, f := range tierFields {
		ch <- f.desc
	}
}

func (c tierCollector) Collect(ch chan<- prometheus.Metric) {
	gs := c()
	// A repeated alias/tier pair would fail the whole scrape; keep the
	// first.
	seen := make(map[[2]string]bool, len(gs))
	for i := range gs {
		g := &gs[i]
		k := [2]string{g.Alias, g.Tier}
		if seen[k] {
			continue
		}
		seen[k] = true
		loaded := 0.0
		if g.Loaded {
			loaded = 1
		}
		sendGauge(ch, tierLoaded, loaded, g.Alias, g.Tier)
		for _, f := range tierFields {
			if v := f.value(g); v != nil {
				sendGauge(ch, f.desc, *v, g.Alias, g.Tier)
			}
		}
	}
}
