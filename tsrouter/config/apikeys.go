package config

import (
	"slices"
	"strings"

	"github.com/anvil-serving/anvil-router/policy"
)

// APIKeys is the [api_keys] table, decoded straight into the policy
// package's types. Key values are resolved and hashed by the key ring at
// start-up and on reload; the Config keeps them as written (${ENV} or,
// discouraged, plaintext) and never prints them.
type APIKeys = policy.KeyConfig

// Admin is the [admin] table.
type Admin struct {
	// AuthEnv names the variable holding the admin bearer token. When set,
	// it (or an admin grant, or a key with scope admin) is the only admin
	// credential; the router token then no longer doubles as one. It is
	// [admin.auth] method "bearer_token" with token_env = auth_env; the
	// two cannot both be set.
	AuthEnv string
	// Auth is [admin.auth] (adminauth.go); Method "" when absent.
	Auth AdminAuth
	// Stats is [admin.stats] (stats.go).
	Stats Stats
}

var (
	apiKeysTableKeys = []string{"mode", "api_keys", "api_keys_file", "store_path"}
	keyRecordKeys    = []string{
		"key", "id", "user_id", "organization_id", "name", "description",
		"scopes", "rate_limit", "max_concurrency", "enabled", "expires_at", "allowed_backends", "guardrails",
		"tokens_per_day", "requests_per_day", "budget",
	}
	adminTableKeys = []string{"auth_env", "auth", "stats"}
)

func parseAPIKeys(t table) APIKeys {
	t.unknown(apiKeysTableKeys, "[api_keys]")
	k := APIKeys{Mode: "permissive"}
	if m, ok := t.str("mode"); ok {
		if m != "permissive" && m != "blocking" {
			t.c.report(t.path.key("mode"), `must be "permissive" or "blocking"`)
		} else {
			k.Mode = m
		}
	}
	k.File = t.nonEmptyPath("api_keys_file")
	k.StorePath = t.nonEmptyPath("store_path")
	if tables, ok := t.tables("api_keys"); ok {
		for _, e := range tables {
			k.Inline = append(k.Inline, parseKeyRecord(e))
		}
	}
	return k
}

// parseKeyRecord reads one [[api_keys.api_keys]] table with the fields of
// an api_keys_file [[keys]] table. Types are checked here; the values
// (key length, scopes, expiry, backends) when the key ring loads them.
func parseKeyRecord(t table) policy.KeyRecord {
	before := len(t.c.problems)
	t.unknown(keyRecordKeys, "[[api_keys.api_keys]]")
	var r policy.KeyRecord
	r.Key, _ = t.str("key")
	r.ID, _ = t.str("id")
	r.UserID, _ = t.str("user_id")
	r.OrganizationID, _ = t.str("organization_id")
	r.Name, _ = t.str("name")
	r.Description, _ = t.str("description")
	r.Scopes = t.stringArray("scopes")
	r.AllowedBackends = t.stringArray("allowed_backends")
	r.Guardrails = t.strings("guardrails")
	if n, ok := t.integer("rate_limit"); ok {
		r.RateLimit = int(n)
	}
	if n, ok := t.integer("max_concurrency"); ok {
		r.MaxConcurrency = int(n)
	}
	if n, ok := t.integer("tokens_per_day"); ok {
		r.TokensPerDay = n
	}
	if n, ok := t.integer("requests_per_day"); ok {
		r.RequestsPerDay = n
	}
	if s, ok := t.str("budget"); ok {
		r.Budget = s
	}
	if b, ok := t.boolean("enabled"); ok {
		r.Enabled = &b
	}
	// A date-time or an RFC 3339 string; policy names a wrong type.
	r.ExpiresAt = t.m["expires_at"]
	// The key ring's own checks, here so they come with a line: with the
	// process environment under Load, a placeholder value under Parse
	// (whose ${NAME}s the key ring resolves later).
	if len(t.c.problems) > before {
		return r // one problem at a time: the types first
	}
	lookup := t.c.env
	if lookup == nil {
		lookup = func(string) (string, bool) { return "placeholder-secret-0123456789abcdef", true }
	}
	if _, err := r.APIKey(policy.SourceConfig, lookup); err != nil {
		msg := err.Error()
		field, rest, ok := strings.Cut(msg, ": ")
		switch {
		case ok && slices.Contains(keyRecordKeys, field):
			msg = rest
		case strings.HasPrefix(msg, "key"):
			field = "key"
		default:
			field = "scopes"
		}
		t.c.report(t.path.key(field), "%s", msg)
	}
	if err := policy.CheckKeyID(r.ID); err != nil && r.ID != "" {
		t.c.report(t.path.key("id"), "%v", err)
	}
	return r
}

// stringArray reads an optional array of strings as written (no trimming).
func (t table) stringArray(key string) []string {
	v, present := t.m[key]
	if !present {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		t.c.report(t.path.key(key), "must be an array of strings, got %s", typeName(v))
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			t.c.report(t.path.key(key).at(i), "must be a string, got %s", typeName(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func parseAdmin(t table) Admin {
	t.unknown(adminTableKeys, "[admin]")
	a := Admin{Stats: DefaultStats()}
	if t.has("auth_env") {
		a.AuthEnv = t.envName("auth_env")
	}
	if au, ok := t.sub("auth"); ok {
		a.Auth = parseAdminAuth(au)
		if t.has("auth_env") {
			t.c.report(t.path.key("auth_env"), "and [admin.auth] both set the admin credential: keep one (auth_env is method \"bearer_token\" with token_env)")
		}
	}
	if st, ok := t.sub("stats"); ok {
		a.Stats = parseStats(st)
	}
	return a
}
