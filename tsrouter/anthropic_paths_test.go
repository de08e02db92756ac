package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestAnthropicPaths: clients whose base URL ends in /anthropic (as
// continuum's docs tell them) reach the same Messages handlers, with the
// same identity, key policy (a Bearer key, or x-api-key as Anthropic
// clients send it), allowed_backends filtering, Anthropic error envelope,
// records and metrics — on both serve dialects.
func TestAnthropicPaths(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	for _, serveDialect := range []string{"openai", "anthropic"} {
		t.Run(serveDialect+" serve", func(t *testing.T) {
			cfg := keysConfig(url, "blocking")
			// The key's one backend, local-b, speaks the serve dialect.
			cfg = strings.Replace(cfg, "id = \"local-b\"\nbase_url = \""+url+"\"\ndialect = \"openai\"", "id = \"local-b\"\nbase_url = \""+url+"\"\ndialect = \""+serveDialect+"\"", 1)
			base := startRouter(t, cfg, routerOpts{env: map[string]string{"PARTNER_KEY": partnerKey}})
			msg := func(model string, stream bool) string {
				return `{"model":"` + model + `","max_tokens":16,"stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":"hi"}]}`
			}
			xKey, bearer := []string{"X-Api-Key", partnerKey}, []string{"Authorization", "Bearer " + partnerKey}
			tests := []struct {
				name, path, body string
				hdr              []string
				want             int
				wantType         string // the error type, or the reply's type
			}{
				{"message with x-api-key", "/anthropic/v1/messages", msg("fast", false), xKey, 200, "message"},
				{"message with a Bearer key", "/anthropic/v1/messages", msg("fast", false), bearer, 200, "message"},
				{"trailing slash", "/anthropic/v1/messages/", msg("fast", false), xKey, 200, "message"},
				{"stream", "/anthropic/v1/messages", msg("fast", true), xKey, 200, ""},
				{"model outside allowed_backends", "/anthropic/v1/messages", msg("chat", false), xKey, 403, "permission_error"},
				{"no key in blocking mode", "/anthropic/v1/messages", msg("fast", false), nil, 401, "authentication_error"},
				{"unknown model", "/anthropic/v1/messages", msg("nope", false), xKey, 404, "model_not_found"},
				{"bad body", "/anthropic/v1/messages", `{"model":`, xKey, 400, "invalid_request_error"},
				{"count_tokens", "/anthropic/v1/messages/count_tokens", msg("fast", false), xKey, 200, ""},
				{"count_tokens without a key", "/anthropic/v1/messages/count_tokens", msg("fast", false), nil, 401, "authentication_error"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					resp := post(t, t.Context(), base+tc.path, tc.body, tc.hdr...)
					body := readAll(t, resp)
					if resp.StatusCode != tc.want {
						t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
					}
					if resp.Header.Get("Request-Id") == "" {
						t.Error("no request-id header (the Anthropic SDKs read it)")
					}
					var v struct {
						Type  string
						Model string
						Error struct{ Type string }
					}
					if tc.want != 200 {
						json.Unmarshal([]byte(body), &v)
						if v.Type != "error" || v.Error.Type != tc.wantType {
							t.Errorf("not the Anthropic envelope with %s: %s", tc.wantType, body)
						}
						return
					}
					switch {
					case strings.Contains(tc.body, `"stream":true`):
						var types []string
						for _, data := range sseEvents(body) {
							var e struct{ Type string }
							json.Unmarshal([]byte(data), &e)
							types = append(types, e.Type)
						}
						if len(types) < 3 || types[0] != "message_start" || types[len(types)-1] != "message_stop" {
							t.Errorf("events %v", types)
						}
					case strings.HasSuffix(tc.path, "count_tokens"):
						if !regexp.MustCompile(`^\{"input_tokens":[1-9]`).MatchString(body) {
							t.Errorf("count_tokens %s", body)
						}
					default:
						json.Unmarshal([]byte(body), &v)
						if v.Type != tc.wantType || v.Model != "fast" {
							t.Errorf("reply %s", body)
						}
					}
				})
			}

			// Anthropic's model list, filtered by the key's backends.
			for _, tc := range []struct {
				path  string
				hdr   []string
				want  int
				wants string
			}{
				{"/anthropic/v1/models", xKey, 200, `{"data":[{"type":"model","id":"fast","display_name":"fast","created_at":"2023-11-14T22:13:20Z","context_window":4096,"max_output_tokens":null}],"has_more":false,"first_id":"fast","last_id":"fast"}`},
				{"/v1/models", append([]string{"Anthropic-Version", "2023-06-01"}, xKey...), 200, `"first_id":"fast"`},
				{"/anthropic/v1/models/fast", xKey, 200, `"type":"model","id":"fast"`},
				{"/anthropic/v1/models/chat", xKey, 404, `"type":"error"`},
				{"/anthropic/v1/models?limit=0", xKey, 400, `"type":"error"`},
				{"/anthropic/v1/models", nil, 401, `"type":"error"`},
			} {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+tc.path, nil)
				for i := 0; i+1 < len(tc.hdr); i += 2 {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if body := readAll(t, resp); resp.StatusCode != tc.want || !strings.Contains(body, tc.wants) {
					t.Errorf("GET %s: %d %s, want %d with %s", tc.path, resp.StatusCode, body, tc.want, tc.wants)
				}
			}

			// The requests are counted like /v1/messages ones.
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if m := regexp.MustCompile(`anvil_router_requests_total\{alias="fast",status="200",tier="local-b"\} (\d+)`).FindStringSubmatch(readAll(t, resp)); m == nil || m[1] != "4" {
				t.Errorf("served Anthropic-path requests on /metrics: %v, want 4", m)
			}
		})
	}
}

// TestAnthropicModelPages: the Anthropic list pages with limit and the
// after_id / before_id cursors, as the SDK's auto-pagination expects.
func TestAnthropicModelPages(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	type page struct {
		Data    []struct{ ID string }
		HasMore bool   `json:"has_more"`
		FirstID string `json:"first_id"`
		LastID  string `json:"last_id"`
	}
	tests := []struct {
		query   string
		ids     string
		hasMore bool
	}{
		{"", "chat,llm.primary", false},
		{"?limit=1", "chat", true},
		{"?limit=1&after_id=chat", "llm.primary", false},
		{"?before_id=llm.primary", "chat", false},
		{"?after_id=llm.primary", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := http.Get(base + "/anthropic/v1/models" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			var p page
			if err := json.Unmarshal([]byte(readAll(t, resp)), &p); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range p.Data {
				ids = append(ids, d.ID)
			}
			if strings.Join(ids, ",") != tc.ids || p.HasMore != tc.hasMore {
				t.Errorf("page %v has_more %v, want %s %v", ids, p.HasMore, tc.ids, tc.hasMore)
			}
			if len(ids) > 0 && (p.FirstID != ids[0] || p.LastID != ids[len(ids)-1]) {
				t.Errorf("first_id %q last_id %q for %v", p.FirstID, p.LastID, ids)
			}
		})
	}
}

// TestModelsExtended: one entry per alias the caller may use, with what a
// client needs to choose a model, filtered by the key like /v1/models.
func TestModelsExtended(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, keysConfig(url, "permissive"), routerOpts{env: map[string]string{"PARTNER_KEY": partnerKey}})
	get := func(path string, hdr ...string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	_, body := get("/v1/models/extended")
	if ids := modelIDs(t, body); strings.Join(ids, ",") != "fast,chat,llm.primary" {
		t.Errorf("anonymous caller sees %v", ids)
	}
	status, body := get("/v1/models/extended", "Authorization", "Bearer "+partnerKey)
	if ids := modelIDs(t, body); status != 200 || strings.Join(ids, ",") != "fast" {
		t.Errorf("key limited to local-b sees %d %v", status, ids)
	}
	status, body = get("/v1/models/extended/fast", "Authorization", "Bearer "+partnerKey)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); status != 200 || err != nil {
		t.Fatalf("one model: %d %s", status, body)
	}
	for field, want := range map[string]any{"id": "fast", "context_window": 4096.0, "tools": true, "dialect": "openai", "max_output_tokens": nil} {
		if m[field] != want {
			t.Errorf("%s = %v, want %v", field, m[field], want)
		}
	}
	for _, field := range []string{"modalities", "thinking", "limits", "ready", "readiness"} {
		if _, ok := m[field]; !ok {
			t.Errorf("no %s in %s", field, body)
		}
	}
	if status, _ := get("/v1/models/extended/chat", "Authorization", "Bearer "+partnerKey); status != 404 {
		t.Errorf("a model outside the key: %d, want 404", status)
	}
}
