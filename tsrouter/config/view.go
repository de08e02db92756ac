package config

import (
	"net/url"
	"regexp"
	"slices"
	"time"
)

// View is the effective config as the admin API shows it (GET
// /admin/config, the web UI's Config page): every setting, with secrets
// only as the names of the environment variables that hold them. An API
// key written literally in the file shows as "(literal, hidden)"; URLs
// lose their userinfo and query; free-form tables (extra_body, params)
// show their keys only, since a value there could be anything.
func (c *Config) View() map[string]any {
	tiers := make([]map[string]any, 0, len(c.Router.Tiers))
	for _, t := range c.Router.Tiers {
		tiers = append(tiers, map[string]any{
			"id": t.ID, "base_url": safeURL(t.BaseURL), "dialect": t.Dialect, "model": t.Model,
			"context_limit": t.ContextLimit, "privacy": t.Privacy, "tool_support": t.ToolSupport,
			"auth_env": t.AuthEnv, "engine": t.Engine, "quantization": t.Quantization,
			"timeout": dur(t.Timeout), "max_concurrency": t.MaxConcurrency, "max_queue": t.MaxQueue,
			"max_output_tokens": t.MaxOutputTokens, "health_path": t.HealthPath, "model_identity": t.ModelIdentity,
			"extra_body_keys": keysOf(t.ExtraBody), "extra_body_defaults_keys": keysOf(t.ExtraBodyDefaults), "params_keys": keysOf(t.Params),
		})
	}
	routes := make([]map[string]string, 0, len(c.Router.Routes))
	for _, r := range c.Router.Routes {
		routes = append(routes, map[string]string{"alias": r.Alias, "tier": r.TierID})
	}
	purpose := make([]map[string]any, 0, len(c.Router.PurposeModels))
	for _, p := range c.Router.PurposeModels {
		purpose = append(purpose, map[string]any{"id": p.ID, "kind": p.Kind, "model": p.Model, "base_url": safeURL(p.BaseURL), "auth_env": p.AuthEnv, "timeout": dur(p.Timeout)})
	}
	audio := make([]map[string]any, 0, len(c.Router.AudioRoutes))
	for _, a := range c.Router.AudioRoutes {
		audio = append(audio, map[string]any{"id": a.ID, "purpose": a.Purpose, "model": a.Model, "base_url": safeURL(a.BaseURL), "auth_env": a.AuthEnv, "default": a.Default, "timeout": dur(a.Timeout)})
	}
	inline := make([]map[string]any, 0, len(c.APIKeys.Inline))
	for _, k := range c.APIKeys.Inline {
		key := "(literal, hidden)"
		if envRef.MatchString(k.Key) {
			key = k.Key
		}
		inline = append(inline, map[string]any{"id": k.ID, "key": key, "user_id": k.UserID, "name": k.Name, "scopes": k.Scopes,
			"rate_limit": k.RateLimit, "max_concurrency": k.MaxConcurrency, "enabled": k.Enabled == nil || *k.Enabled, "allowed_backends": k.AllowedBackends})
	}
	return map[string]any{
		"path": c.Path,
		"server": map[string]any{"auth_env": c.Server.AuthEnv, "admission_state_path": c.Server.AdmissionStatePath,
			"decision_log_path": c.Server.DecisionLogPath, "local_listen": c.Server.LocalListen, "local_api": c.Server.LocalAPI},
		"router": map[string]any{"tiers": tiers, "model_routes": routes, "purpose_models": purpose, "audio_routes": audio,
			"exhaustion_status": c.Router.ExhaustionStatus, "exhaustion_retry_after": dur(c.Router.ExhaustionRetryAfter),
			"refuse_hosted_tools": c.Router.RefuseHostedTools, "relay_timeout": dur(c.Router.RelayTimeout),
			"queue_timeout": dur(c.Router.QueueTimeout), "probe_in_background": c.Router.ProbeInBackground},
		"tailnet": map[string]any{"hostname": c.Tailnet.Hostname, "state_dir": c.Tailnet.StateDir, "control_url": safeURL(c.Tailnet.ControlURL),
			"advertise_tags": c.Tailnet.AdvertiseTags, "ephemeral": c.Tailnet.Ephemeral, "capability": c.Tailnet.Capability,
			"require_grant": c.Tailnet.RequireGrant, "allow_tags": c.Tailnet.AllowTags, "allow_users": c.Tailnet.AllowUsers,
			"https": c.Tailnet.HTTPS, "redirect_http": c.Tailnet.RedirectHTTP},
		"api_keys": map[string]any{"mode": c.APIKeys.Mode, "api_keys_file": c.APIKeys.File, "store_path": c.APIKeys.StorePath, "api_keys": inline},
		"admin": map[string]any{"auth_env": c.Admin.AuthEnv,
			"auth": map[string]any{"method": c.Admin.Auth.Method, "token_env": c.Admin.Auth.TokenEnv, "username": c.Admin.Auth.Username, "password_env": c.Admin.Auth.PasswordEnv},
			"stats": map[string]any{"enabled": c.Admin.Stats.Enabled, "retention_window": dur(c.Admin.Stats.RetentionWindow), "token_tracking": c.Admin.Stats.TokenTracking,
				"persistence": map[string]any{"enabled": c.Admin.Stats.Persistence.Enabled, "path": c.Admin.Stats.Persistence.Path,
					"snapshot_interval": dur(c.Admin.Stats.Persistence.SnapshotInterval), "max_age": dur(c.Admin.Stats.Persistence.MaxAge)}}},
		"guardrails": guardrailsView(c.Guardrails),
		"webui":      map[string]any{"enabled": c.WebUI.Enabled, "path_prefix": c.WebUI.PathPrefix},
		"acp":        map[string]any{"enabled": c.ACP.Enabled, "default_model": c.ACP.DefaultModel},
	}
}

// envRef is a key value that is only a ${NAME} reference.
var envRef = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*\}$`)

func safeURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func keysOf(m map[string]any) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// guardrailsView shows each provider's option names, not their values: an
// option may hold a URL with a token or a header.
func guardrailsView(g Guardrails) map[string]any {
	providers := make([]map[string]any, 0, len(g.Providers))
	for _, p := range g.Providers {
		providers = append(providers, map[string]any{"name": p.Name, "type": p.Type, "enabled": p.Enabled, "on_error": p.OnError,
			"apply": p.Apply, "timeout": dur(p.Timeout), "option_keys": keysOf(p.Options)})
	}
	return map[string]any{"enabled": g.Enabled, "mode": g.Mode, "output_check": g.OutputCheck, "output_window": g.OutputWindow,
		"max_hold": g.MaxHold, "providers": providers}
}
