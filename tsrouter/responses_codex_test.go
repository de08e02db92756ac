package tsrouter_test

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// codexRequest carries what Codex sends on every turn: client_metadata,
// a namespace, a hosted tool, store false, include, prompt_cache_key.
const codexRequest = `{"model":"chat","instructions":"be brief","stream":%s,
"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"fake:call multi_agent_v1__spawn_agent {\"task\":\"t\"}"}]}],
"tools":[{"type":"function","name":"exec_command","parameters":{"type":"object","properties":{}}},
 {"type":"namespace","name":"multi_agent_v1","description":"agents","tools":[{"type":"function","name":"spawn_agent","parameters":{"type":"object","properties":{"task":{"type":"string"}}}}]},
 {"type":"web_search","external_web_access":true}],
"tool_choice":"auto","parallel_tool_calls":true,"store":false,"include":["reasoning.encrypted_content"],
"prompt_cache_key":"01a2","client_metadata":{"session_id":"s1","x-codex-turn-metadata":"{\"turn_id\":\"t\"}"}}`

// TestResponsesCodexHTTP: Codex's request shape over real HTTP — hosted
// tools dropped with a warning header and an audit detail, the namespace
// member offered flattened and its call returned with name and namespace
// (streamed and not), nothing of client_metadata or the hosted tool
// reaching the serve.
func TestResponsesCodexHTTP(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	var logs syncBuffer
	h := newHandler(t, oneTier(url, ""), routerOpts{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, stream := range []string{"false", "true"} {
		t.Run("stream="+stream, func(t *testing.T) {
			resp := post(t, t.Context(), srv.URL+"/v1/responses", strings.Replace(codexRequest, "%s", stream, 1))
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if w := resp.Header.Get("X-Anvil-Warning"); w != "hosted_tools_dropped=web_search" {
				t.Errorf("X-Anvil-Warning %q", w)
			}
			up := string(fake.LastRequest().Body)
			for _, leak := range []string{"client_metadata", "turn_id", "web_search", "prompt_cache_key"} {
				if strings.Contains(up, leak) {
					t.Errorf("%s reached the serve: %s", leak, up)
				}
			}
			if !strings.Contains(up, `"name":"multi_agent_v1__spawn_agent"`) {
				t.Errorf("namespace member not offered flattened: %s", up)
			}
			final := body
			if stream == "true" {
				i := strings.Index(body, "event: response.completed\ndata: ")
				if i < 0 {
					t.Fatalf("no response.completed: %s", body)
				}
				final = strings.TrimSpace(body[i+len("event: response.completed\ndata: "):])
				var ev struct{ Response json.RawMessage }
				json.Unmarshal([]byte(final), &ev)
				final = string(ev.Response)
			}
			var r struct{ Output []map[string]any }
			if err := json.Unmarshal([]byte(final), &r); err != nil || len(r.Output) != 1 {
				t.Fatalf("output %s", final)
			}
			call := r.Output[0]
			if call["type"] != "function_call" || call["name"] != "spawn_agent" || call["namespace"] != "multi_agent_v1" || call["arguments"] != `{"task":"t"}` {
				t.Errorf("call %v", call)
			}
		})
	}
	if !strings.Contains(logs.String(), `"detail":"hosted tools dropped: web_search"`) {
		t.Errorf("audit line without the dropped tools: %s", logs.String())
	}
}

// TestResponsesHostedToolsRefused: with hosted_tools = "refuse" a request
// declaring one is a 400 unsupported_feature naming it, and nothing
// reaches the serve.
func TestResponsesHostedToolsRefused(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, oneTier(url, ""), routerOpts{refuseHostedTools: true}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp := post(t, t.Context(), srv.URL+"/v1/responses", strings.Replace(codexRequest, "%s", "true", 1))
	body := readAll(t, resp)
	typ, msg := responsesError(t, body)
	if resp.StatusCode != 400 || typ != "unsupported_feature" || !strings.Contains(msg, "tools[2].type (web_search is a hosted tool") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if n := fake.Stats().Requests; n != 0 {
		t.Errorf("serve saw %d requests", n)
	}
}
