package config

import (
	"fmt"
	"net/url"
	"strings"
)

var (
	tierKeys = []string{
		"id", "base_url", "dialect", "context_limit", "privacy", "tool_support",
		"auth_env", "model", "extra_body", "extra_body_defaults", "engine",
		"quantization", "params", "timeout", "max_concurrency", "max_queue",
		"max_output_tokens", "health_path", "model_identity",
	}
	// requiredTierKeys are demanded even where they carry no information
	// (auth_env on an unauthenticated serve) so files stay explicit.
	requiredTierKeys = []string{
		"id", "base_url", "dialect", "context_limit", "privacy", "tool_support", "auth_env",
	}
)

// claimID registers id in the namespace shared by tiers, purpose models and
// audio routes, reporting a clash with the entry that took it first.
func claimID(t table, id string, ids map[string]keyPath) bool {
	if prev, dup := ids[id]; dup {
		t.c.report(t.path.key("id"), "duplicate id %q (already used by %s)", id, prev)
		return false
	}
	ids[id] = t.path
	return true
}

// entryID reads the id every tier, purpose model and audio route carries.
func entryID(t table, ids map[string]keyPath) (string, bool) {
	id, ok := t.str("id")
	if !ok {
		return "", false
	}
	if strings.TrimSpace(id) == "" {
		t.c.report(t.path.key("id"), "must be a non-empty string")
		return "", false
	}
	return id, claimID(t, id, ids)
}

// baseURL reads a required http(s) base URL. The value is never echoed:
// a URL may carry credentials in its userinfo.
func baseURL(t table) (string, bool) {
	s, ok := t.str("base_url")
	if !ok {
		return "", false
	}
	if !hasHTTPScheme(s) {
		t.c.report(t.path.key("base_url"), "must start with http:// or https://")
		return "", false
	}
	// Python only checked the scheme; an unparsable URL or one without a
	// host would fail on every request, so it is refused up front instead.
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		t.c.report(t.path.key("base_url"), "is not a valid URL with a host")
		return "", false
	}
	return s, true
}

// parseTier validates one [[router.tiers]] entry. idOK reports whether the
// tier claimed a usable id, so aliases can target it even if other keys of
// the tier are wrong (one mistake should not cascade into alias errors).
func parseTier(t table, ids map[string]keyPath) (tier Tier, idOK bool) {
	t.unknown(tierKeys, "tier entry")
	var missing []string
	for _, k := range requiredTierKeys {
		if !t.has(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		label := t.path.String()
		if id, ok := t.m["id"].(string); ok && id != "" {
			label = fmt.Sprintf("%q", id)
		}
		t.c.report(t.path, "tier %s missing required keys: %s", label, strings.Join(missing, ", "))
	}

	tier.ID, idOK = entryID(t, ids)
	tier.BaseURL, _ = baseURL(t)
	if d, ok := t.str("dialect"); ok {
		if d != "openai" && d != "anthropic" {
			t.c.report(t.path.key("dialect"), "must be \"openai\" or \"anthropic\", got %q", d)
		} else {
			tier.Dialect = d
		}
	}
	tier.ContextLimit = t.positiveInt("context_limit")
	if p, ok := t.str("privacy"); ok {
		if p != "local" {
			t.c.report(t.path.key("privacy"), "must be \"local\" (only local serves are routed), got %q", p)
		} else {
			tier.Privacy = p
		}
	}
	tier.ToolSupport, _ = t.boolean("tool_support")
	if t.has("auth_env") {
		tier.AuthEnv = t.envName("auth_env")
	}
	// An empty model means "not set": the serve's own id is derived later.
	tier.Model, _ = t.str("model")
	tier.ExtraBody = t.jsonTable("extra_body")
	tier.ExtraBodyDefaults = t.jsonTable("extra_body_defaults")
	tier.Engine, _ = t.str("engine")
	tier.Quantization, _ = t.str("quantization")
	tier.Params = t.jsonTable("params")
	tier.Timeout = t.seconds("timeout", 0, false)
	tier.MaxConcurrency = t.positiveInt("max_concurrency")
	tier.MaxQueue = t.positiveInt("max_queue")
	if tier.MaxQueue > 0 && tier.MaxConcurrency == 0 {
		t.c.report(t.path.key("max_queue"), "needs max_concurrency: without a concurrency cap nothing queues")
	}
	if n := t.positiveInt("max_output_tokens"); n > 0 {
		if tier.ContextLimit > 0 && n > tier.ContextLimit {
			t.c.report(t.path.key("max_output_tokens"), "must be <= context_limit (%d), got %d", tier.ContextLimit, n)
		} else {
			tier.MaxOutputTokens = n
		}
	}
	tier.HealthPath = healthPath(t)
	if on, ok := t.boolean("model_identity"); ok && on {
		tier.ModelIdentity = true
		// privacy = "local" is also required, but privacy accepts nothing
		// else and is reported on its own.
		var lacks []string
		if tier.Model == "" {
			lacks = append(lacks, "a non-empty model")
		}
		if !t.has("health_path") {
			lacks = append(lacks, "health_path")
		}
		if len(lacks) > 0 {
			t.c.report(t.path.key("model_identity"), "requires %s", strings.Join(lacks, ", "))
		}
	}
	return tier, idOK
}

// healthPath reads the readiness path, which is joined to base_url, so it
// must be a plain absolute path: no scheme-relative "//host", no query or
// fragment that would change what is probed.
func healthPath(t table) string {
	p, ok := t.str("health_path")
	if !ok {
		return ""
	}
	switch {
	case !strings.HasPrefix(p, "/"):
		t.c.report(t.path.key("health_path"), "must start with /")
	case strings.HasPrefix(p, "//"):
		t.c.report(t.path.key("health_path"), "must not start with //")
	case strings.ContainsAny(p, "?#"):
		t.c.report(t.path.key("health_path"), "must not contain ? or #")
	default:
		return p
	}
	return ""
}
