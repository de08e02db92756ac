package acp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// testEditor is a minimal editor on the other end of the agent's pipes:
// it records session/update notifications and answers permission
// requests with the queued option ids.
type testEditor struct {
	conn    *conn
	mu      sync.Mutex
	updates []update
	answers []string
	asked   int
}

func (e *testEditor) handle(ctx context.Context, method string, params json.RawMessage) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch method {
	case "session/update":
		var n struct {
			Update update `json:"update"`
		}
		if err := json.Unmarshal(params, &n); err != nil {
			return nil, err
		}
		e.updates = append(e.updates, n.Update)
		return nil, nil
	case "session/request_permission":
		e.asked++
		if len(e.answers) == 0 {
			return map[string]any{"outcome": map[string]string{"outcome": "cancelled"}}, nil
		}
		id := e.answers[0]
		e.answers = e.answers[1:]
		return map[string]any{"outcome": map[string]string{"outcome": "selected", "optionId": id}}, nil
	}
	return nil, rpcErr(codeMethodNotFound, "editor: %s", method)
}

func (e *testEditor) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, u := range e.updates {
		out = append(out, u.SessionUpdate)
	}
	return out
}

// startAgent runs an agent against router on in-memory pipes and returns
// the connected editor.
func startAgent(t *testing.T, cfg Config, router string) *testEditor {
	t.Helper()
	a, err := New(Options{Config: cfg, Router: &Router{BaseURL: router, Client: http.DefaultClient, Token: "tok-secret"}, Log: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Serve(ctx, inR, outW)
		outW.Close()
	}()
	e := &testEditor{conn: newConn(outR, inW, slog.New(slog.DiscardHandler))}
	go e.conn.serve(ctx, e.handle)
	t.Cleanup(func() {
		inW.Close()
		cancel()
		<-done
	})
	return e
}

func (e *testEditor) call(t *testing.T, method string, params any, out any) error {
	t.Helper()
	return e.conn.call(t.Context(), method, params, out)
}

func (e *testEditor) mustCall(t *testing.T, method string, params any, out any) {
	t.Helper()
	if err := e.call(t, method, params, out); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

// initSession initializes (no editor capabilities) and opens a session.
func (e *testEditor) initSession(t *testing.T) string {
	t.Helper()
	e.mustCall(t, "initialize", map[string]any{"protocolVersion": 1, "clientCapabilities": map[string]any{}}, nil)
	var s newSessionResponse
	e.mustCall(t, "session/new", map[string]any{"cwd": t.TempDir(), "mcpServers": []any{}}, &s)
	return s.SessionID
}

// sseRouter is a fake router answering every chat request with the frames
// frames(n) returns for the n-th request (0-based).
func sseRouter(t *testing.T, frames func(n int) []string) (*httptest.Server, *int) {
	t.Helper()
	var mu sync.Mutex
	count := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := count
		count++
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok-secret" {
			http.Error(w, `{"error":{"message":"no token","type":"authentication_error"}}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, f := range frames(n) {
			fmt.Fprintf(w, "data: %s\n\n", f)
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv, &count
}

func textFrame(s string) string {
	b, _ := json.Marshal(s)
	return `{"choices":[{"index":0,"delta":{"content":` + string(b) + `}}]}`
}

func finishFrame(reason string) string {
	return `{"choices":[{"index":0,"delta":{},"finish_reason":"` + reason + `"}]}`
}

func toolFrame(name, args string) string {
	b, _ := json.Marshal(args)
	return `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"` + name + `","arguments":` + string(b) + `}}]}}]}`
}

// testConfig is the spec's defaults with a model.
func testConfig() Config {
	return Config{
		Agent:        AgentInfo{Name: "anvil-router"},
		Capabilities: Capabilities{LoadSession: true, MCP: true},
		DefaultModel: "m",
		Permissions:  defaultPermissions(),
		Sessions:     Sessions{MaxConcurrent: 10, IdleTimeout: time.Hour, Storage: "memory"},
		MCP:          MCPLimits{MaxConnectionsPerSession: 5, ServerSpawnTimeout: 10 * time.Second},
	}
}

func defaultPermissions() Permissions {
	return Permissions{DefaultPolicy: PolicyAskAlways, AutoAllow: []string{"read", "search", "think"}, AlwaysAsk: []string{"edit", "delete", "execute"}}
}

func joined(ss []string) string { return strings.Join(ss, ",") }
