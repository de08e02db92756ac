package tsrouter_test

import (
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

func purposeConfig(url string) string {
	return oneTier(url, "") + `
[[router.purpose_models]]
id = "embed"
kind = "embedding"
model = "Qwen/Qwen3-Embedding-0.6B"
base_url = "` + url + `/v1"

[[router.purpose_models]]
id = "rerank"
kind = "rerank"
model = "BAAI/bge-reranker-v2-m3"
base_url = "` + url + `/v1/"

[[router.purpose_models]]
id = "locked"
kind = "embedding"
model = "needs-a-key"
base_url = "` + url + `/v1"
auth_env = "UNSET_PURPOSE_KEY"
`
}

// TestPurposeModels: embeddings and rerank go verbatim to the configured
// serve, never to a chat tier, with the Python router's validation — and
// upstream 4xx passed through as 4xx (the Python router said 500).
func TestPurposeModels(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, purposeConfig(url), routerOpts{})
	embed := `{"model":"Qwen/Qwen3-Embedding-0.6B", "input":["a","b"], "encoding_format":"float"}`
	tests := []struct {
		name, path, body string
		mode             fakeserve.Mode
		want             int
		wantType         string
		wantIn           string // substring of the reply
	}{
		{name: "embeddings relayed", path: "/v1/embeddings", body: embed, want: 200, wantIn: `"object":"list"`},
		{name: "rerank relayed", path: "/v1/rerank", body: `{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":["x","y"]}`, want: 200, wantIn: `"relevance_score"`},
		{name: "unknown model lists the configured ones", path: "/v1/embeddings", body: `{"model":"chat","input":"x"}`, want: 404, wantType: "model_not_found", wantIn: "Qwen/Qwen3-Embedding-0.6B"},
		{name: "kind mismatch", path: "/v1/rerank", body: `{"model":"Qwen/Qwen3-Embedding-0.6B","query":"q","documents":["x"]}`, want: 404, wantType: "model_not_found"},
		{name: "entry with an unset auth_env is skipped", path: "/v1/embeddings", body: `{"model":"needs-a-key","input":"x"}`, want: 404},
		{name: "empty input", path: "/v1/embeddings", body: `{"model":"Qwen/Qwen3-Embedding-0.6B","input":[]}`, want: 400, wantType: "invalid_request_error"},
		{name: "missing model", path: "/v1/embeddings", body: `{"input":"x"}`, want: 400},
		{name: "rerank without documents", path: "/v1/rerank", body: `{"model":"BAAI/bge-reranker-v2-m3","query":"q"}`, want: 400},
		{name: "upstream 400 stays a 400", path: "/v1/embeddings", body: embed, mode: fakeserve.ModeStatus400, want: 400, wantType: "invalid_request_error", wantIn: "input too long"},
		{name: "upstream 500 is a bad gateway", path: "/v1/embeddings", body: embed, mode: fakeserve.ModeStatus500, want: 502, wantType: "upstream_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetMode(tc.mode)
			defer fake.SetMode(fakeserve.ModeOK)
			resp := post(t, t.Context(), base+tc.path, tc.body)
			got := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
			if tc.wantType != "" && decodeError(t, got).Error.Type != tc.wantType {
				t.Errorf("type %s, want %s", decodeError(t, got).Error.Type, tc.wantType)
			}
			if !strings.Contains(got, tc.wantIn) {
				t.Errorf("reply lacks %q: %s", tc.wantIn, got)
			}
			if tc.want == 200 {
				if last := fake.LastRequest(); string(last.Body) != tc.body {
					t.Errorf("serve got %q, want the caller's body verbatim", last.Body)
				}
			}
		})
	}
	if fake.LastRequest().Path == "/v1/chat/completions" {
		t.Error("a purpose request reached the chat endpoint")
	}
	// Not configured: the endpoints do not exist.
	plain := startRouter(t, oneTier(url, ""), routerOpts{})
	resp := post(t, t.Context(), plain+"/v1/embeddings", embed)
	if readAll(t, resp); resp.StatusCode != 404 {
		t.Errorf("embeddings without purpose models: %d", resp.StatusCode)
	}
}
