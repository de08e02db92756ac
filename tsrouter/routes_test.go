package tsrouter_test

import (
	"net/http"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
)

// TestRouteClasses: the route table gives each served path its API key
// class; anything it does not serve is PathOther, which fails closed
// (blocking mode wants a key, scope write).
func TestRouteClasses(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, purposeConfig(url), routerOpts{}, nil)
	tests := []struct {
		path string
		want policy.PathClass
	}{
		{"/v1/chat/completions", policy.PathInference},
		{"/v1/chat/completions/", policy.PathInference},
		{"/v1/completions", policy.PathInference},
		{"/v1/responses", policy.PathInference},
		{"/v1/messages", policy.PathInference},
		{"/v1/messages/count_tokens", policy.PathInference},
		{"/v1/embeddings", policy.PathInference},
		{"/v1/rerank", policy.PathInference},
		{"/v1/models", policy.PathModels},
		{"/v1/models/qwen/qwen3-32b", policy.PathModels},
		{"/healthz", policy.PathOpen},
		{"/health", policy.PathOpen},
		{"/v1/models/capabilities", policy.PathMetadata},
		{"/v1/models/fingerprints", policy.PathMetadata},
		{"/v1/models/capacity", policy.PathMetadata},
		{"/v1/health/tiers", policy.PathMetadata},
		{"/v1/router/status", policy.PathMetadata},
		{"/metrics", policy.PathMetrics},
		{"/admin/api-keys", policy.PathAdmin},
		{"/admin/api-keys/key-1", policy.PathAdmin},
		{"/admin/api-keys/key-1/rotate", policy.PathAdmin},
		{"/v1/admin/transition", policy.PathAdmin},
		{"/v1/decisions", policy.PathAdmin},
		{"/v1/stats", policy.PathAdmin},
		{"/v1/requests/req_1", policy.PathAdmin},
		// Not served, so not classified: fail closed.
		{"/", policy.PathOther},
		{"/v1/files", policy.PathOther},
		{"/admin/other", policy.PathOther},
		{"/v1/audio/speech", policy.PathOther}, // no audio route configured
		{"/v1/audio/translations", policy.PathOther},
		{"/V1/chat/completions", policy.PathOther},
		{"//v1/chat/completions", policy.PathOther},
		{"/v1/chat/completions/../../metrics", policy.PathOther},
		{"/healthzz", policy.PathOther},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := tsrouter.RouteClass(h, tc.path); got != tc.want {
				t.Errorf("class of %q = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
	var zero policy.PathClass
	if zero != policy.PathOther || !zero.Blocking() || zero.Scope() != policy.ScopeWrite {
		t.Error("the zero PathClass must fail closed")
	}
}

// TestUncleanPathsAreUnknown: a path that is not clean is an unknown path
// after authentication — never a redirect an unauthenticated caller could
// learn from, never a route.
func TestUncleanPathsAreUnknown(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	for _, path := range []string{"//v1/models", "/v1/./models", "/v1/x/../models"} {
		t.Run(path, func(t *testing.T) {
			for _, tc := range []struct {
				auth string
				want int
			}{{"", 401}, {"Bearer " + routerToken, 404}} {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base, nil)
				req.URL.Path = path
				req.URL.RawPath = path
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(t, resp)
				if resp.StatusCode != tc.want {
					t.Errorf("authenticated %v: %d %s, want %d", tc.auth != "", resp.StatusCode, body, tc.want)
				}
			}
		})
	}
}
