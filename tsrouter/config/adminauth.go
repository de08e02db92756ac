package config

import "strings"

// AdminAuth is the [admin.auth] table: how an operator proves admin rights
// besides a tailnet admin grant or an API key with scope admin (the
// seed's admin.auth). Secrets are named by environment variable, never
// written here; serve resolves them at start and refuses to start when
// one is unset.
type AdminAuth struct {
	// Method is "none", "bearer_token", "basic" or "api_key"; "" means
	// the table is absent.
	Method string
	// TokenEnv names the admin token's variable (bearer_token, api_key).
	TokenEnv string
	// Username and PasswordEnv are the basic method's credential.
	Username    string
	PasswordEnv string
}

// Admin auth methods of the seed.
const (
	AdminAuthNone   = "none"
	AdminAuthBearer = "bearer_token"
	AdminAuthBasic  = "basic"
	AdminAuthAPIKey = "api_key"
)

var adminAuthKeys = []string{"method", "token_env", "username", "password_env"}

// parseAdminAuth reads [admin.auth]: the fields each method needs are
// required and those it does not use are refused, so a file never holds a
// credential that silently does nothing.
func parseAdminAuth(t table) AdminAuth {
	t.unknown(adminAuthKeys, "[admin.auth]")
	var a AdminAuth
	m, ok := t.str("method")
	if !ok {
		if !t.has("method") {
			t.c.report(t.path.key("method"), `is required: "none", "bearer_token", "basic" or "api_key"`)
		}
		return a
	}
	need := map[string]bool{}
	switch m {
	case AdminAuthNone:
	case AdminAuthBearer, AdminAuthAPIKey:
		need["token_env"] = true
	case AdminAuthBasic:
		need["username"], need["password_env"] = true, true
	default:
		t.c.report(t.path.key("method"), `must be "none", "bearer_token", "basic" or "api_key"`)
		return a
	}
	a.Method = m
	for _, k := range adminAuthKeys[1:] {
		switch {
		case need[k] && !t.has(k):
			t.c.report(t.path.key(k), "is required with method %q", m)
		case !need[k] && t.has(k):
			t.c.report(t.path.key(k), "is not used by method %q", m)
		}
	}
	if t.has("token_env") {
		a.TokenEnv = t.envName("token_env")
	}
	if t.has("password_env") {
		a.PasswordEnv = t.envName("password_env")
	}
	if u, ok := t.str("username"); ok {
		if u == "" || strings.ContainsAny(u, ":\r\n") {
			// RFC 7617: the user-id cannot contain a colon.
			t.c.report(t.path.key("username"), "must be non-empty, without a colon or line break")
		} else {
			a.Username = u
		}
	}
	return a
}
