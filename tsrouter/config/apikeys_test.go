package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestInlineKeyRecords: [[api_keys.api_keys]] tables are decoded straight
// into policy records, with the file's line for every mistake and no
// value in any message.
func TestInlineKeyRecords(t *testing.T) {
	const tier = "[[router.tiers]]\nid = \"t1\"\nbase_url = \"http://127.0.0.1:8001/v1\"\ndialect = \"openai\"\ncontext_limit = 4096\nprivacy = \"local\"\ntool_support = true\nauth_env = \"T1\"\n[router.model_routes]\na = \"t1\"\n"
	t.Run("all fields", func(t *testing.T) {
		cfg, err := config.Parse("t.toml", []byte(tier+`
[api_keys]
mode = "blocking"
[[api_keys.api_keys]]
key = "${PARTNER_KEY}"
id = "k1"
user_id = "u"
organization_id = "o"
name = "n"
description = "d"
scopes = ["read", " write"]
rate_limit = 500
enabled = false
expires_at = 2030-01-02T03:04:05Z
allowed_backends = ["t1"]
`))
		if err != nil {
			t.Fatal(err)
		}
		k := cfg.APIKeys
		if k.Mode != "blocking" || len(k.Inline) != 1 {
			t.Fatalf("mode %q, %d records", k.Mode, len(k.Inline))
		}
		r := k.Inline[0]
		if r.Key != "${PARTNER_KEY}" || r.ID != "k1" || r.UserID != "u" || r.OrganizationID != "o" ||
			r.Name != "n" || r.Description != "d" || r.RateLimit != 500 || r.Enabled == nil || *r.Enabled ||
			strings.Join(r.Scopes, ",") != "read, write" || strings.Join(r.AllowedBackends, ",") != "t1" {
			t.Errorf("record %+v", r)
		}
		if exp, ok := r.ExpiresAt.(time.Time); !ok || !exp.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("expires_at %#v", r.ExpiresAt)
		}
	})
	cases := []struct {
		name, table, key, msg string
		line                  int
	}{
		{"unknown field", "key = \"sk-secret-value-1234567890\"\nid = \"k\"\nscope = [\"read\"]\n", "api_keys.api_keys[0].scope", "unknown field", 15},
		{"wrong type", "key = 12345678901234567890.5\nid = \"k\"\n", "api_keys.api_keys[0].key", "must be a string, got float", 13},
		{"scope not a string", "key = \"sk-secret-value-1234567890\"\nscopes = [\"read\", 3]\n", "api_keys.api_keys[0].scopes[1]", "must be a string, got integer", 14},
		{"enabled not a boolean", "key = \"sk-secret-value-1234567890\"\nenabled = \"yes\"\n", "api_keys.api_keys[0].enabled", "must be true or false", 14},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("t.toml", []byte(tier+"[api_keys]\n[[api_keys.api_keys]]\n"+c.table))
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 {
				t.Fatalf("err = %v, want one problem", err)
			}
			p := ce.Problems[0]
			if p.Key != c.key || !strings.Contains(p.Msg, c.msg) || p.Line != c.line {
				t.Errorf("problem %+v, want key %s line %d and %q", p, c.key, c.line, c.msg)
			}
			if strings.Contains(err.Error(), "sk-secret") || strings.Contains(err.Error(), "1234567890") {
				t.Errorf("the error shows a key value: %v", err)
			}
		})
	}
}
