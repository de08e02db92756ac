package config

import (
	"fmt"
	"net/url"
	"strings"
)

// TierByID returns the tier with the given id, or nil.
func (c *Config) TierByID(id string) *Tier {
	for i := range c.Router.Tiers {
		if c.Router.Tiers[i].ID == id {
			return &c.Router.Tiers[i]
		}
	}
	return nil
}

// RequiresAuth reports whether startup must refuse to run unless
// [server].auth_env resolves to a token: audio routes relay caller media
// and are never served unauthenticated. Parsing accepts such files (the
// shipped scaffolds declare audio routes without [server]) so that
// `check` can still validate them.
func (c *Config) RequiresAuth() bool {
	return len(c.Router.AudioRoutes) > 0
}

// Summary is the short human view printed by `anvil-router check`: one line
// per alias in /v1/models order, then the non-chat surfaces. It shows hosts
// only, never URL userinfo or secret values.
func (c *Config) Summary() string {
	var b strings.Builder
	for _, r := range c.Router.Routes {
		fmt.Fprintf(&b, "%s → %s", r.Alias, r.TierID)
		if t := c.TierByID(r.TierID); t != nil {
			model := t.Model
			if model == "" {
				model = "model from serve"
			}
			fmt.Fprintf(&b, " (%s, %s, %s)", model, t.Dialect, urlHost(t.BaseURL))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%d purpose models, %d audio routes\n", len(c.Router.PurposeModels), len(c.Router.AudioRoutes))
	if c.ACP.Present {
		b.WriteString(c.ACP.Summary())
	}
	if g := c.Guardrails; g.Enabled {
		var names []string
		for _, p := range g.Providers {
			if p.Enabled {
				names = append(names, p.Name+" ("+p.Type+")")
			}
		}
		fmt.Fprintf(&b, "guardrails: %s, %d providers: %s\n", g.Mode, len(names), strings.Join(names, ", "))
	}
	return b.String()
}

func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "?"
	}
	return u.Host
}
