// Package acp is `anvil-router acp`: a coding agent that speaks the Agent
// Client Protocol (JSON-RPC 2.0, one JSON object per line on stdin and
// stdout) to an editor — Zed, JetBrains IDEs, Neovim — and uses the anvil
// router as its model provider. It is a client of the router over HTTP,
// so the caller's tailnet identity, grants, keys and budgets apply to the
// agent like to any other client.
//
// The protocol layer is a small implementation of its own (jsonrpc.go,
// protocol.go): the agent needs a dozen methods, and the tests drive it
// with the official TypeScript SDK, which validates every request and
// notification the agent sends against the protocol's schema.
//
// Each prompt turn streams a chat completion with tools from the router;
// the model's tool calls run through the editor (fs/read_text_file,
// fs/write_text_file, terminal/*), locally for search, or over MCP for
// the servers the editor passed (mcp.go), each after the permission policy
// (permissions.go) allowed it or the user did. Nothing touches a path
// outside the session's working directory.
package acp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The environment variables holding the agent's credentials. They are
// read by the command only, and never passed on to MCP servers.
const (
	EnvRouterToken = "ANVIL_ROUTER_TOKEN"
	EnvAPIKey      = "ANVIL_API_KEY"
	EnvTSAuthKey   = "TS_AUTHKEY"
)

// Options configure an Agent.
type Options struct {
	// Config is the agent's part of the [acp] table.
	Config Config
	// Router is how the agent reaches the models.
	Router *Router
	// Log receives diagnostics; it must not write to the protocol stream.
	Log *slog.Logger
	// Version is reported in agentInfo when [acp.agent].version is empty.
	Version string
	// MCPStderr receives the MCP servers' stderr (nil: discarded). Never
	// the protocol stream.
	MCPStderr io.Writer
}

// Agent serves one editor connection.
type Agent struct {
	opts   Options
	log    *slog.Logger
	policy policy
	store  store
	conn   *conn

	mu          sync.Mutex
	initialized bool
	caps        clientCaps
	sessions    map[string]*session
}

// session is a live session: its record plus what exists only while the
// agent runs (the running turn, MCP connections).
type session struct {
	id  string
	cwd string // absolute, symlinks resolved

	mu       sync.Mutex // guards the fields below
	rec      *record
	lastUsed time.Time
	cancel   context.CancelFunc // of the running turn, nil when idle
	turnDone chan struct{}
	mcp      *mcpBridge
}

// New builds an agent; file storage is opened (and created) here.
func New(o Options) (*Agent, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Router == nil {
		return nil, errors.New("acp: no router")
	}
	a := &Agent{opts: o, log: o.Log, policy: policy{cfg: o.Config.Permissions}, sessions: map[string]*session{}}
	switch o.Config.Sessions.Storage {
	case "file":
		fs, err := newFileStore(o.Config.Sessions.StoragePath)
		if err != nil {
			return nil, err
		}
		a.store = fs
	default:
		a.store = newMemStore()
	}
	return a, nil
}

// Serve speaks ACP on r and w until r ends or ctx is done. Only protocol
// messages are written to w.
func (a *Agent) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	a.conn = newConn(r, w, a.log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.reapIdle(ctx)
	err := a.conn.serve(ctx, a.handle)
	a.mu.Lock()
	for id, s := range a.sessions {
		s.close()
		delete(a.sessions, id)
	}
	a.mu.Unlock()
	return err
}

func (a *Agent) handle(ctx context.Context, method string, params json.RawMessage) (any, error) {
	if method != "initialize" {
		a.mu.Lock()
		ok := a.initialized
		a.mu.Unlock()
		if !ok && method != "session/cancel" {
			return nil, rpcErr(codeInvalidRequest, "call initialize first")
		}
	}
	switch method {
	case "initialize":
		return a.initialize(params)
	case "authenticate":
		// Credentials come from the environment and the tailnet identity;
		// there is nothing to do here.
		return struct{}{}, nil
	case "session/new":
		return a.newSession(ctx, params)
	case "session/load":
		if !a.opts.Config.Capabilities.LoadSession {
			return nil, rpcErr(codeMethodNotFound, "session/load is not offered by this agent")
		}
		return a.loadSession(ctx, params)
	case "session/prompt":
		return a.prompt(ctx, params)
	case "session/cancel":
		var p cancelNotification
		if err := json.Unmarshal(params, &p); err == nil {
			a.cancelTurn(p.SessionID)
		}
		return nil, nil
	case "session/set_mode":
		return a.setMode(params)
	}
	return nil, rpcErr(codeMethodNotFound, "method %q is not supported", method)
}

func decodeParams(params json.RawMessage, v any) error {
	if len(params) == 0 {
		return rpcErr(codeInvalidParams, "params are required")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return rpcErr(codeInvalidParams, "invalid params: %v", err)
	}
	return nil
}

func (a *Agent) initialize(params json.RawMessage) (any, error) {
	var p initializeRequest
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.initialized = true
	a.caps = p.ClientCapabilities
	a.mu.Unlock()
	c := a.opts.Config
	version := c.Agent.Version
	if version == "" {
		version = a.opts.Version
	}
	return initializeResponse{
		// Version negotiation: answer the client's version when this agent
		// speaks it, otherwise the latest one it does.
		ProtocolVersion: ProtocolVersion,
		AgentCapabilities: agentCapabilities{
			LoadSession: c.Capabilities.LoadSession,
			PromptCapabilities: promptCapabilities{
				Image: c.Capabilities.Image, Audio: c.Capabilities.Audio, EmbeddedContext: c.Capabilities.EmbeddedContext,
			},
			MCPCapabilities: mcpCapabilities{},
		},
		AuthMethods: []authMethod{},
		AgentInfo:   agentInfo(c.Agent, version),
	}, nil
}

func agentInfo(ag AgentInfo, version string) implementation {
	info := implementation{Name: ag.Name, Title: ag.Name, Version: version}
	if ag.Description != "" {
		info.Meta = map[string]string{"description": ag.Description}
	}
	return info
}

func (a *Agent) clientCaps() clientCaps {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.caps
}

func newSessionID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "sess_" + hex.EncodeToString(b)
}

// checkCWD returns the session directory with symlinks resolved; it must be
// an absolute path to an existing directory.
func checkCWD(cwd string) (string, error) {
	if !filepath.IsAbs(cwd) {
		return "", rpcErr(codeInvalidParams, "cwd must be an absolute path, got %q", cwd)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(cwd))
	if err != nil {
		return "", rpcErr(codeInvalidParams, "cwd: %v", err)
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", rpcErr(codeInvalidParams, "cwd %q is not a directory", cwd)
	}
	return real, nil
}

// admit registers a live session unless max_concurrent are already live.
func (a *Agent) admit(s *session) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, live := a.sessions[s.id]; !live && len(a.sessions) >= a.opts.Config.Sessions.MaxConcurrent {
		return rpcErr(codeInternalError, "too many sessions: %d are open (acp.sessions.max_concurrent)", len(a.sessions))
	}
	if old := a.sessions[s.id]; old != nil && old != s {
		old.close()
	}
	a.sessions[s.id] = s
	return nil
}

func (a *Agent) newSession(ctx context.Context, params json.RawMessage) (any, error) {
	var p newSessionRequest
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	cwd, err := checkCWD(p.CWD)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	s := &session{id: newSessionID(), cwd: cwd, lastUsed: now}
	s.rec = &record{ID: s.id, CWD: p.CWD, Created: now, Updated: now, Mode: modeAsk}
	if err := a.admit(s); err != nil {
		return nil, err
	}
	if err := a.startMCP(ctx, s, p.MCPServers); err != nil {
		a.drop(s.id)
		return nil, err
	}
	if err := a.store.save(s.rec); err != nil {
		a.drop(s.id)
		return nil, err
	}
	a.log.Info("acp: session opened", "session", s.id, "cwd", cwd)
	return newSessionResponse{SessionID: s.id, Modes: modes(s.rec.Mode)}, nil
}

func (a *Agent) loadSession(ctx context.Context, params json.RawMessage) (any, error) {
	var p loadSessionRequest
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	rec, err := a.store.load(p.SessionID)
	if errors.Is(err, errNoSession) {
		return nil, rpcErr(codeNotFound, "no session %q", p.SessionID)
	}
	if err != nil {
		return nil, err
	}
	cwd, err := checkCWD(p.CWD)
	if err != nil {
		return nil, err
	}
	if live := a.session(p.SessionID); live != nil {
		// Loading an open session starts it afresh from what was saved
		// after its last turn, unless a turn is running.
		live.mu.Lock()
		busy := live.cancel != nil
		live.mu.Unlock()
		if busy {
			return nil, rpcErr(codeInvalidRequest, "session %q has a prompt turn running", p.SessionID)
		}
		a.drop(p.SessionID)
	}
	if rec.CWD != p.CWD {
		// "Always" answers were given for one project; they do not carry
		// over to another working directory.
		rec.Always = nil
	}
	rec.CWD = p.CWD
	s := &session{id: rec.ID, cwd: cwd, rec: rec, lastUsed: time.Now()}
	if err := a.admit(s); err != nil {
		return nil, err
	}
	if err := a.startMCP(ctx, s, p.MCPServers); err != nil {
		a.drop(s.id)
		return nil, err
	}
	// The whole history goes out as session/update before the answer.
	for _, u := range rec.Replay {
		if err := a.conn.notify("session/update", sessionNotification{SessionID: s.id, Update: u}); err != nil {
			return nil, err
		}
	}
	return loadSessionResponse{Modes: modes(rec.Mode)}, nil
}

func (a *Agent) session(id string) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

func (a *Agent) drop(id string) {
	a.mu.Lock()
	s := a.sessions[id]
	delete(a.sessions, id)
	a.mu.Unlock()
	if s != nil {
		s.close()
	}
}

func (s *session) close() {
	s.mu.Lock()
	cancel, bridge := s.cancel, s.mcp
	s.mcp = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if bridge != nil {
		bridge.close()
	}
}

// cancelTurn ends the session's running turn at once: the model request's
// connection closes and pending editor requests are abandoned.
func (a *Agent) cancelTurn(id string) {
	s := a.session(id)
	if s == nil {
		return
	}
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// reapIdle closes sessions that had no turn for idle_timeout. With file
// storage they can be loaded again; in memory they are gone.
func (a *Agent) reapIdle(ctx context.Context) {
	idle := a.opts.Config.Sessions.IdleTimeout
	if idle <= 0 {
		return
	}
	tick := time.NewTicker(min(max(idle/4, 10*time.Millisecond), time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.mu.Lock()
			var stale []*session
			for id, s := range a.sessions {
				s.mu.Lock()
				if s.cancel == nil && now.Sub(s.lastUsed) > idle {
					stale = append(stale, s)
					delete(a.sessions, id)
				}
				s.mu.Unlock()
			}
			a.mu.Unlock()
			for _, s := range stale {
				s.close()
				if ms, ok := a.store.(*memStore); ok {
					ms.mu.Lock()
					delete(ms.m, s.id)
					ms.mu.Unlock()
				}
				a.log.Info("acp: idle session closed", "session", s.id)
			}
		}
	}
}

// Session modes: "ask" applies the permission policy; "read-only" refuses
// every tool that changes something (edit, delete, move, execute) without
// asking, for looking around a codebase safely.
const (
	modeAsk      = "ask"
	modeReadOnly = "read-only"
)

func modes(current string) *modeState {
	return &modeState{CurrentModeID: current, AvailableModes: []sessionMode{
		{ID: modeAsk, Name: "Ask", Description: "Tools run as the permission policy says; the rest ask first"},
		{ID: modeReadOnly, Name: "Read-only", Description: "Reads and searches only; edits and commands are refused"},
	}}
}

func (a *Agent) setMode(params json.RawMessage) (any, error) {
	var p setModeRequest
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.ModeID != modeAsk && p.ModeID != modeReadOnly {
		return nil, rpcErr(codeInvalidParams, "unknown mode %q", p.ModeID)
	}
	s := a.session(p.SessionID)
	if s == nil {
		return nil, rpcErr(codeNotFound, "no session %q", p.SessionID)
	}
	s.mu.Lock()
	s.rec.Mode = p.ModeID
	rec := s.snapshot()
	s.mu.Unlock()
	if err := a.store.save(rec); err != nil {
		return nil, err
	}
	a.emit(s, update{SessionUpdate: "current_mode_update", CurrentModeID: p.ModeID}, false)
	return struct{}{}, nil
}

// emit sends a session/update; with replay it is also recorded for
// session/load.
func (a *Agent) emit(s *session, u update, replay bool) {
	b, err := json.Marshal(u)
	if err != nil {
		a.log.Error("acp: encoding an update", "err", err)
		return
	}
	if replay {
		s.mu.Lock()
		s.rec.Replay = append(s.rec.Replay, b)
		s.mu.Unlock()
	}
	if err := a.conn.notify("session/update", sessionNotification{SessionID: s.id, Update: b}); err != nil {
		a.log.Warn("acp: sending an update", "err", err)
	}
}

// snapshot copies the record for saving or restoring; s.mu must be held.
func (s *session) snapshot() *record {
	r := *s.rec
	r.History = slices.Clone(s.rec.History)
	r.Replay = slices.Clone(s.rec.Replay)
	r.Always = maps.Clone(s.rec.Always)
	return &r
}

// newToolCallID names a tool call uniquely, also across restarts of the
// agent (a loaded session's old calls keep their ids).
func newToolCallID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "call_" + hex.EncodeToString(b)
}
