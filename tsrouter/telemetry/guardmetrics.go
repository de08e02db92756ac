package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// guardBuckets: a pattern provider takes microseconds, a guard model or a
// webhook a round trip.
var guardBuckets = []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5}

func (m *Metrics) newGuardMetrics() {
	m.guardVerdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "anvil_guardrail_verdicts_total",
		Help: "Guardrail verdicts by provider, stage (input, output), verdict (allow, flag, transform, block) and category.",
	}, []string{"provider", "stage", "verdict", "category"})
	m.guardSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "anvil_guardrail_seconds",
		Help:    "Time one guardrail provider took to check one request or answer.",
		Buckets: guardBuckets,
	}, []string{"provider", "stage"})
}

// ObserveGuardrail counts one provider verdict; took is 0 when the check
// was not timed as one call (a streamed answer's pattern gate).
func (m *Metrics) ObserveGuardrail(provider, stage, verdict, category string, took time.Duration) {
	m.guardVerdicts.WithLabelValues(provider, stage, verdict, category).Inc()
	if took > 0 {
		m.guardSeconds.WithLabelValues(provider, stage).Observe(took.Seconds())
	}
}
