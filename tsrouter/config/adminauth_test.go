package config_test

import (
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestAdminAuthTable: [admin.auth] takes the seed's four methods, each
// with exactly the fields it uses; secrets are variable names; the older
// [admin].auth_env cannot be set beside it.
func TestAdminAuthTable(t *testing.T) {
	base := doc("", tierLines(), "")
	t.Run("valid", func(t *testing.T) {
		tests := []struct {
			name, table string
			want        config.AdminAuth
		}{
			{"none", `method = "none"`, config.AdminAuth{Method: "none"}},
			{"bearer_token", "method = \"bearer_token\"\ntoken_env = \"ANVIL_ADMIN_TOKEN\"", config.AdminAuth{Method: "bearer_token", TokenEnv: "ANVIL_ADMIN_TOKEN"}},
			{"api_key", "method = \"api_key\"\ntoken_env = \"ANVIL_ADMIN_KEY\"", config.AdminAuth{Method: "api_key", TokenEnv: "ANVIL_ADMIN_KEY"}},
			{"basic", "method = \"basic\"\nusername = \"ops\"\npassword_env = \"ANVIL_ADMIN_PASSWORD\"", config.AdminAuth{Method: "basic", Username: "ops", PasswordEnv: "ANVIL_ADMIN_PASSWORD"}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				cfg := mustParse(t, base+"\n[admin.auth]\n"+tc.table+"\n")
				if cfg.Admin.Auth != tc.want || cfg.Admin.AuthEnv != "" {
					t.Errorf("admin %+v, want auth %+v", cfg.Admin, tc.want)
				}
			})
		}
		if cfg := mustParse(t, base); cfg.Admin.Auth.Method != "" {
			t.Errorf("absent table: method %q", cfg.Admin.Auth.Method)
		}
	})
	tests := []struct {
		name, table string
		wants       []want
	}{
		{"method missing", "[admin.auth]\ntoken_env = \"X\"\n", []want{{"admin.auth.method", "[admin.auth]", "is required"}}},
		{"unknown method", "[admin.auth]\nmethod = \"oauth\"\n", []want{{"admin.auth.method", `method = "oauth"`, `must be "none"`}}},
		{"unknown key", "[admin.auth]\nmethod = \"none\"\ntoken = \"${ADMIN_TOKEN}\"\n", []want{{"admin.auth.token", "token =", "unknown field in [admin.auth]"}}},
		{"bearer without token_env", "[admin.auth]\nmethod = \"bearer_token\"\n", []want{{"admin.auth.token_env", "[admin.auth]", `is required with method "bearer_token"`}}},
		{"api_key without token_env", "[admin.auth]\nmethod = \"api_key\"\n", []want{{"admin.auth.token_env", "[admin.auth]", `is required with method "api_key"`}}},
		{"basic without password_env", "[admin.auth]\nmethod = \"basic\"\nusername = \"ops\"\n", []want{{"admin.auth.password_env", "[admin.auth]", "is required"}}},
		{"basic without username", "[admin.auth]\nmethod = \"basic\"\npassword_env = \"P\"\n", []want{{"admin.auth.username", "[admin.auth]", "is required"}}},
		{"basic username with a colon", "[admin.auth]\nmethod = \"basic\"\nusername = \"o:ps\"\npassword_env = \"P\"\n", []want{{"admin.auth.username", "o:ps", "without a colon"}}},
		{"none with a token", "[admin.auth]\nmethod = \"none\"\ntoken_env = \"T\"\n", []want{{"admin.auth.token_env", "token_env", `is not used by method "none"`}}},
		{"bearer with a password", "[admin.auth]\nmethod = \"bearer_token\"\ntoken_env = \"T\"\npassword_env = \"P\"\n", []want{{"admin.auth.password_env", "password_env", "is not used"}}},
		{"a secret where its variable belongs", "[admin.auth]\nmethod = \"bearer_token\"\ntoken_env = \"adm-0123456789abcdef\"\n", []want{{"admin.auth.token_env", "token_env", "must be the NAME of an environment variable"}}},
		{"auth_env beside [admin.auth]", "[admin]\nauth_env = \"A\"\n[admin.auth]\nmethod = \"none\"\n", []want{{"admin.auth_env", `auth_env = "A"`, "both set the admin credential"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, base+"\n"+tc.table, tc.wants)
		})
	}
}
