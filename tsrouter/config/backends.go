package config

import "github.com/anvil-serving/anvil-router/backends"

// Backends is the part of the file the serve side needs, in its own
// types: tiers, aliases, purpose models, audio routes and relay settings.
func (c *Config) Backends() backends.Config {
	r := c.Router
	out := backends.Config{
		ExhaustionStatus:          r.ExhaustionStatus,
		RelayTimeout:              r.RelayTimeout,
		AvailabilityProbeInterval: r.AvailabilityProbeInterval,
		AvailabilityProbeTimeout:  r.AvailabilityProbeTimeout,
		AvailabilityProbeMaxBytes: r.AvailabilityProbeMaxBytes,
		ProbeInBackground:         r.ProbeInBackground,
		QueueTimeout:              r.QueueTimeout,
		Audio: backends.AudioLimits{
			MaxInputBytes:  r.AudioMaxInputBytes,
			MaxOutputBytes: r.AudioMaxOutputBytes,
			MaxTextChars:   r.AudioMaxTextChars,
			MaxConcurrency: r.AudioMaxConcurrency,
		},
	}
	// The file's entry types and the serve side's have the same fields
	// (a compile error here means one side changed without the other).
	for _, t := range r.Tiers {
		out.Tiers = append(out.Tiers, backends.TierConfig(t))
	}
	for _, rt := range r.Routes {
		out.Routes = append(out.Routes, backends.Route(rt))
	}
	for _, pm := range r.PurposeModels {
		out.PurposeModels = append(out.PurposeModels, backends.PurposeConfig(pm))
	}
	for _, ar := range r.AudioRoutes {
		out.AudioRoutes = append(out.AudioRoutes, backends.AudioRouteConfig(ar))
	}
	return out
}
