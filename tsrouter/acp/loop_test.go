package acp

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestStopReasons(t *testing.T) {
	cases := []struct {
		name     string
		frames   func(n int) []string
		want     string
		requests int
	}{
		{"end_turn", func(int) []string { return []string{textFrame("hi"), finishFrame("stop")} }, stopEndTurn, 1},
		{"max_tokens", func(int) []string { return []string{textFrame("hi"), finishFrame("length")} }, stopMaxTokens, 1},
		{"refusal", func(int) []string { return []string{finishFrame("content_filter")} }, stopRefusal, 1},
		{"max_turn_requests", func(int) []string {
			return []string{toolFrame("search", `{"pattern":"x"}`), finishFrame("tool_calls")}
		}, stopMaxTurnRequests, maxTurnRequests},
		{"tool round trip", func(n int) []string {
			if n == 0 {
				return []string{toolFrame("update_plan", `{"entries":[{"content":"step one"}]}`), finishFrame("tool_calls")}
			}
			return []string{textFrame("done"), finishFrame("stop")}
		}, stopEndTurn, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, count := sseRouter(t, tc.frames)
			e := startAgent(t, testConfig(), srv.URL)
			id := e.initSession(t)
			var res promptResponse
			e.mustCall(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("go")}}, &res)
			if res.StopReason != tc.want {
				t.Errorf("stop reason %q, want %q", res.StopReason, tc.want)
			}
			if *count != tc.requests {
				t.Errorf("%d model requests, want %d", *count, tc.requests)
			}
		})
	}
}

func TestPlanUpdate(t *testing.T) {
	srv, _ := sseRouter(t, func(n int) []string {
		if n == 0 {
			return []string{toolFrame("update_plan", `{"entries":[{"content":"read","status":"completed"},{"content":"fix","priority":"high"}]}`), finishFrame("tool_calls")}
		}
		return []string{textFrame("ok"), finishFrame("stop")}
	})
	e := startAgent(t, testConfig(), srv.URL)
	id := e.initSession(t)
	e.mustCall(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("plan")}}, nil)
	var plan *update
	e.mu.Lock()
	for i := range e.updates {
		if e.updates[i].SessionUpdate == "plan" {
			plan = &e.updates[i]
		}
	}
	e.mu.Unlock()
	if plan == nil {
		t.Fatalf("no plan update in %v", e.kinds())
	}
	want := []planEntry{{"read", "medium", "completed"}, {"fix", "high", "pending"}}
	if len(plan.Entries) != 2 || plan.Entries[0] != want[0] || plan.Entries[1] != want[1] {
		t.Errorf("plan %+v, want %+v", plan.Entries, want)
	}
}

func TestRouterErrorFailsThePromptOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":{"message":"model m is not covered by your grant","type":"permission_error"}}`)
	}))
	defer srv.Close()
	a := startAgent(t, testConfig(), srv.URL)
	id := a.initSession(t)
	err := a.call(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("x")}}, nil)
	var re *RPCError
	if !errors.As(err, &re) || re.Code != codeInternalError {
		t.Fatalf("err %v, want an internal JSON-RPC error", err)
	}
	if !strings.Contains(re.Message, "403 permission_error: model m is not covered") {
		t.Errorf("message %q does not carry the router's status and reason", re.Message)
	}
	if strings.Contains(re.Message, "tok-secret") {
		t.Errorf("the token leaked into the error: %q", re.Message)
	}
	// The session is still usable (and unchanged by the failed turn).
	a.mustCall(t, "session/set_mode", setModeRequest{SessionID: id, ModeID: modeReadOnly}, nil)
}

func TestMaxConcurrentSessions(t *testing.T) {
	srv, _ := sseRouter(t, func(int) []string { return nil })
	cfg := testConfig()
	cfg.Sessions.MaxConcurrent = 2
	e := startAgent(t, cfg, srv.URL)
	e.initSession(t)
	e.mustCall(t, "session/new", map[string]any{"cwd": t.TempDir(), "mcpServers": []any{}}, nil)
	err := e.call(t, "session/new", map[string]any{"cwd": t.TempDir(), "mcpServers": []any{}}, nil)
	if err == nil || !strings.Contains(err.Error(), "max_concurrent") {
		t.Fatalf("third session: %v, want a max_concurrent error", err)
	}
}

func TestIdleSessionsClose(t *testing.T) {
	srv, _ := sseRouter(t, func(int) []string { return []string{textFrame("x"), finishFrame("stop")} })
	cfg := testConfig()
	cfg.Sessions.IdleTimeout = 50 * time.Millisecond
	e := startAgent(t, cfg, srv.URL)
	id := e.initSession(t)
	time.Sleep(300 * time.Millisecond)
	err := e.call(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("x")}}, nil)
	var re *RPCError
	if !errors.As(err, &re) || re.Code != codeNotFound {
		t.Fatalf("prompt after idle_timeout: %v, want not found", err)
	}
}

func TestPromptValidation(t *testing.T) {
	srv, _ := sseRouter(t, func(int) []string { return nil })
	e := startAgent(t, testConfig(), srv.URL)
	id := e.initSession(t)
	cases := []struct {
		name   string
		params any
		code   int
	}{
		{"no prompt", map[string]any{"sessionId": id}, codeInvalidParams},
		{"unknown session", promptRequest{SessionID: "sess_nope", Prompt: []contentBlock{textBlock("x")}}, codeNotFound},
		{"image not offered", promptRequest{SessionID: id, Prompt: []contentBlock{{Type: "image", Data: "AA==", MimeType: "image/png"}}}, codeInvalidParams},
		{"embedded context not offered", promptRequest{SessionID: id, Prompt: []contentBlock{{Type: "resource", Resource: &embeddedResource{URI: "file:///x", Text: "x"}}}}, codeInvalidParams},
		{"unknown block", promptRequest{SessionID: id, Prompt: []contentBlock{{Type: "hologram"}}}, codeInvalidParams},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := e.call(t, "session/prompt", tc.params, nil)
			var re *RPCError
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Fatalf("err %v, want code %d", err, tc.code)
			}
		})
	}
}

// session/load of an open, idle session (memory storage) replays what was
// saved after its last turn and the session goes on.
func TestLoadReplaysAnOpenSession(t *testing.T) {
	srv, _ := sseRouter(t, func(int) []string { return []string{textFrame("hel"), textFrame("lo"), finishFrame("stop")} })
	e := startAgent(t, testConfig(), srv.URL)
	id := e.initSession(t)
	e.mustCall(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("hi")}}, nil)
	e.mu.Lock()
	e.updates = nil
	e.mu.Unlock()
	var res loadSessionResponse
	e.mustCall(t, "session/load", loadSessionRequest{SessionID: id, CWD: t.TempDir(), MCPServers: []mcpServer{}}, &res)
	if got := joined(e.kinds()); got != "user_message_chunk,agent_message_chunk" {
		t.Fatalf("replayed %s", got)
	}
	e.mu.Lock()
	merged := e.updates[1].Content.Text
	e.mu.Unlock()
	if merged != "hello" {
		t.Errorf("replayed text %q, want the streamed chunks merged", merged)
	}
	if res.Modes == nil || res.Modes.CurrentModeID != modeAsk {
		t.Errorf("modes %+v", res.Modes)
	}
	e.mustCall(t, "session/prompt", promptRequest{SessionID: id, Prompt: []contentBlock{textBlock("again")}}, nil)
	err := e.call(t, "session/load", loadSessionRequest{SessionID: "sess_0123456789abcdef0123456789abcdef", CWD: t.TempDir()}, nil)
	var re *RPCError
	if !errors.As(err, &re) || re.Code != codeNotFound {
		t.Errorf("unknown session: %v", err)
	}
}

// Editor-backed tools are offered only when the editor advertised the
// capability; search and the plan always.
func TestToolsFollowCapabilities(t *testing.T) {
	a, err := New(Options{Config: testConfig(), Router: &Router{}})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{rec: &record{}}
	cases := []struct {
		name string
		caps func(*clientCaps)
		want string
	}{
		{"none", func(*clientCaps) {}, "search,update_plan"},
		{"read only", func(c *clientCaps) { c.FS.ReadTextFile = true }, "read_file,search,update_plan"},
		{"write only", func(c *clientCaps) { c.FS.WriteTextFile = true }, "write_file,search,update_plan"},
		{"terminal", func(c *clientCaps) { c.Terminal = true }, "run_command,search,update_plan"},
		{"all", func(c *clientCaps) { c.FS.ReadTextFile, c.FS.WriteTextFile, c.Terminal = true, true, true }, "read_file,write_file,run_command,search,update_plan"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a.caps = clientCaps{}
			tc.caps(&a.caps)
			var names []string
			for _, sp := range a.tools(s) {
				names = append(names, sp.Function.Name)
			}
			if got := joined(names); got != tc.want {
				t.Errorf("tools %s, want %s", got, tc.want)
			}
		})
	}
}
