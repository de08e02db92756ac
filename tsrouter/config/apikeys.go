package config

// APIKeys is the [api_keys] table (continuum's "API Keys" section in this
// router's terms). Key values are resolved and hashed at start-up and on
// reload, never kept in the Config.
type APIKeys struct {
	// Mode is "permissive" (default: keys optional, a valid key attaches
	// its policy) or "blocking" (inference and model listing need a key).
	Mode string
	// File is the optional api_keys_file (TOML, [[keys]] tables).
	File string
	// StorePath keeps keys created at run time (digests only); empty means
	// the default next to the tailnet state.
	StorePath string
	// Inline are the [[api_keys.api_keys]] tables as written (values may
	// use ${ENV}); they are decoded with the key-file rules.
	Inline []map[string]any
}

// Admin is the [admin] table.
type Admin struct {
	// AuthEnv names the variable holding the admin bearer token. When set,
	// it (or an admin grant, or a key with scope admin) is the only admin
	// credential; the router token then no longer doubles as one.
	AuthEnv string
}

var (
	apiKeysTableKeys = []string{"mode", "api_keys", "api_keys_file", "store_path"}
	adminTableKeys   = []string{"auth_env"}
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
			k.Inline = append(k.Inline, e.m)
		}
	}
	return k
}

func parseAdmin(t table) Admin {
	t.unknown(adminTableKeys, "[admin]")
	var a Admin
	if t.has("auth_env") {
		a.AuthEnv = t.envName("auth_env")
	}
	return a
}
