package backends

import (
	"context"
	"log/slog"
	"strings"
)

// Purpose is an embedding or rerank serve ([[router.purpose_models]]):
// requests are relayed verbatim to its /embeddings or /rerank.
type Purpose struct {
	PurposeConfig
	ep endpoint
	// prober feeds /v1/health/tiers (requests are not gated on it).
	prober *prober
}

// purposeKinds maps a kind to its upstream path.
var purposeKinds = map[string]string{"embedding": "/embeddings", "rerank": "/rerank"}

// newPurposes builds the purpose serves. An entry whose auth_env is set
// but not resolvable is skipped with a warning (the others still serve),
// as before.
func (s *Set) newPurposes(cfg Config, lookup func(string) string, log *slog.Logger) {
	for _, pm := range cfg.PurposeModels {
		auth := ""
		if pm.AuthEnv != "" {
			v := strings.TrimSpace(lookup(pm.AuthEnv))
			if v == "" {
				log.Warn("purpose model skipped: its auth_env is not set", "id", pm.ID, "auth_env", pm.AuthEnv)
				continue
			}
			auth = "Bearer " + v
		}
		timeout := pm.Timeout
		if timeout <= 0 {
			timeout = cfg.RelayTimeout
		}
		s.purposes = append(s.purposes, &Purpose{PurposeConfig: pm, ep: endpoint{
			url:       strings.TrimRight(pm.BaseURL, "/") + purposeKinds[pm.Kind],
			authValue: auth,
			timeout:   timeout,
			client:    s.client,
		}, prober: newServiceProber(pm.BaseURL, pm.Model, cfg.AvailabilityProbeInterval, cfg.AvailabilityProbeTimeout, s.client)})
	}
}

// Purposes returns the bound purpose models in config order.
func (s *Set) Purposes() []*Purpose { return s.purposes }

// Readiness probes (through the cache) whether the purpose serve answers.
func (p *Purpose) Readiness() Readiness {
	if p.prober == nil {
		return Readiness{Available: true, State: "ready", Reason: ReasonNotConfigured, ExpectedModel: p.Model}
	}
	return p.prober.check()
}

// Purpose finds the serve for (kind, model); model matches exactly.
func (s *Set) Purpose(kind, model string) (*Purpose, bool) {
	for _, p := range s.purposes {
		if p.Kind == kind && p.Model == model {
			return p, true
		}
	}
	return nil, false
}

// PurposeModels lists the configured model names of a kind.
func (s *Set) PurposeModels(kind string) []string {
	var out []string
	for _, p := range s.purposes {
		if p.Kind == kind {
			out = append(out, p.Model)
		}
	}
	return out
}

// Relay posts body to the serve as sent and returns its reply.
func (p *Purpose) Relay(ctx context.Context, body []byte) (*Reply, error) {
	return p.ep.complete(ctx, body)
}
