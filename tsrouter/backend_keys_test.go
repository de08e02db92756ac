package tsrouter_test

import (
	"strings"
	"testing"
)

// TestRestrictedKeysReachOnlyTheirBackends: allowed_backends names backend
// ids of every kind — chat tiers, purpose models, audio routes — and a key
// restricted to one kind reaches nothing of the others. (Keys restricted
// to anything used to be refused on embeddings and audio, whose names were
// looked up as chat aliases.)
func TestRestrictedKeysReachOnlyTheirBackends(t *testing.T) {
	f := startAudioFakes(t)
	cfg := audioTOML(f, audioSetup{}) + `
[[router.purpose_models]]
id = "emb"
kind = "embedding"
model = "e5-small"
base_url = "` + f.altURL + `/v1"

[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "sk-chat-only-0123456789abcdef"
id = "chat-only"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
allowed_backends = ["local-a"]

[[api_keys.api_keys]]
key = "sk-emb-only-0123456789abcdef"
id = "emb-only"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
allowed_backends = ["emb"]

[[api_keys.api_keys]]
key = "sk-tts-only-0123456789abcdef"
id = "tts-only"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
allowed_backends = ["tts-main"]

[[api_keys.api_keys]]
key = "sk-anything-0123456789abcdef"
id = "anything"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
`
	base := startRouter(t, cfg, audioRouterOpts())
	requests := map[string][2]string{
		"chat":       {"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`},
		"embeddings": {"/v1/embeddings", `{"model":"e5-small","input":"hi"}`},
		"speech":     {"/v1/audio/speech", `{"input":"hi","response_format":"pcm16"}`},
	}
	tests := []struct {
		key     string
		allowed string // the one request kind that passes; "" = all
	}{
		{"sk-chat-only-0123456789abcdef", "chat"},
		{"sk-emb-only-0123456789abcdef", "embeddings"},
		{"sk-tts-only-0123456789abcdef", "speech"},
		{"sk-anything-0123456789abcdef", ""},
	}
	for _, tc := range tests {
		for kind, r := range requests {
			name := strings.SplitN(tc.key, "-0", 2)[0] + " → " + kind
			t.Run(name, func(t *testing.T) {
				status, _, body := audioPost(t, base+r[0], r[1], "X-Api-Key", tc.key)
				want := 403
				if tc.allowed == "" || tc.allowed == kind {
					want = 200
				}
				if status != want {
					t.Fatalf("status %d, want %d: %s", status, want, body)
				}
				if want == 403 && !strings.Contains(body, "permission_error") {
					t.Errorf("403 without permission_error: %s", body)
				}
			})
		}
	}
}
