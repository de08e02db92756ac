package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// ACP is the [acp] table: the `anvil-router acp` coding agent that editors
// spawn and talk to over stdio (Agent Client Protocol). The agent is a
// client of the router; this table only shapes how it behaves towards the
// editor. Unknown keys are rejected at every level.
type ACP struct {
	// Present is true when the file has an [acp] table.
	Present bool
	// Enabled must be true for `anvil-router acp --config FILE` to start
	// (ACP is off by default).
	Enabled bool
	// StdioEnabled is [acp.transport.stdio].enabled (default true); stdio is
	// the only transport, so false refuses to start.
	StdioEnabled bool
	// Agent is [acp.agent]: what initialize reports as agentInfo.
	Agent ACPAgent
	// Capabilities is [acp.capabilities]: what initialize advertises.
	Capabilities ACPCapabilities
	// DefaultModel is the router alias every turn uses; empty means the
	// first model the router lists for the caller.
	DefaultModel string
	// SystemPrompt is put before every conversation.
	SystemPrompt string
	// CodingAgentMode adds the built-in coding-agent system prompt.
	CodingAgentMode bool
	// Permissions is [acp.permissions].
	Permissions ACPPermissions
	// Sessions is [acp.sessions].
	Sessions ACPSessions
	// MCP is [acp.mcp]: the bridge to the editor's MCP servers.
	MCP ACPMCP
}

// ACPAgent names the agent to the editor.
type ACPAgent struct {
	Name, Version, Description string
}

// ACPCapabilities are the agent capabilities advertised in initialize.
type ACPCapabilities struct {
	LoadSession     bool
	Image           bool
	Audio           bool
	EmbeddedContext bool
	MCP             bool
}

// ACPPermissions decide which tool calls run without asking the user.
type ACPPermissions struct {
	// DefaultPolicy is "ask_always", "allow_read" or "allow_all".
	DefaultPolicy string
	// AutoAllow are tool kinds that run without asking; AlwaysAsk are kinds
	// that ask even when the default policy would allow them.
	AutoAllow []string
	AlwaysAsk []string
}

// ACPSessions bounds the agent's sessions.
type ACPSessions struct {
	MaxConcurrent int
	IdleTimeout   time.Duration
	// Storage is "memory" or "file"; StoragePath is the directory of the
	// file store (required for "file").
	Storage     string
	StoragePath string
}

// ACPMCP bounds the MCP servers an editor may hand the agent.
type ACPMCP struct {
	MaxConnectionsPerSession int
	// AllowedServers are the server names accepted (empty: all).
	AllowedServers     []string
	ServerSpawnTimeout time.Duration
}

// ACPToolKinds are the tool kinds of the Agent Client Protocol; the
// permission lists name these.
var ACPToolKinds = []string{"read", "edit", "delete", "move", "search", "execute", "think", "fetch", "other"}

// ACP policies.
const (
	ACPAskAlways = "ask_always"
	ACPAllowRead = "allow_read"
	ACPAllowAll  = "allow_all"
)

// DefaultACP is the configuration the agent uses when no file is given,
// and the base every [acp] table is read over.
func DefaultACP() ACP {
	return ACP{
		StdioEnabled: true,
		Agent:        ACPAgent{Name: "anvil-router", Description: "The tailnet's models as a coding agent"},
		Capabilities: ACPCapabilities{LoadSession: true, MCP: true},
		Permissions: ACPPermissions{
			DefaultPolicy: ACPAskAlways,
			AutoAllow:     []string{"read", "search", "think"},
			AlwaysAsk:     []string{"edit", "delete", "execute"},
		},
		Sessions: ACPSessions{MaxConcurrent: 10, IdleTimeout: time.Hour, Storage: "memory"},
		MCP:      ACPMCP{MaxConnectionsPerSession: 5, ServerSpawnTimeout: 10 * time.Second},
	}
}

// ParseACP reads only the [acp] table of a document (the agent's file may
// hold nothing else; any other table is ignored here). A file without
// [acp] yields DefaultACP with Present false.
func ParseACP(name string, data []byte) (ACP, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return ACP{}, &Error{File: name, Problems: []Problem{syntaxProblem(err)}}
	}
	c := &checker{lines: indexLines(data)}
	a := DefaultACP()
	if t, ok := (table{c: c, m: doc}).sub("acp"); ok {
		a = parseACP(t)
	}
	if len(c.problems) > 0 {
		sortProblems(c.problems)
		return ACP{}, &Error{File: name, Problems: c.problems}
	}
	return a, nil
}

var (
	acpKeys         = []string{"enabled", "transport", "agent", "capabilities", "default_model", "system_prompt", "coding_agent_mode", "permissions", "sessions", "mcp"}
	acpCapKeys      = []string{"load_session", "image", "audio", "embedded_context", "mcp"}
	acpPermKeys     = []string{"default_policy", "auto_allow", "always_ask"}
	acpSessionKeys  = []string{"max_concurrent", "idle_timeout", "storage", "storage_path"}
	acpMCPKeys      = []string{"max_connections_per_session", "allowed_servers", "server_spawn_timeout"}
	acpAgentKeys    = []string{"name", "version", "description"}
	acpPolicies     = []string{ACPAskAlways, ACPAllowRead, ACPAllowAll}
	acpStorageKinds = []string{"memory", "file"}
)

func parseACP(t table) ACP {
	t.unknown(acpKeys, "[acp]")
	a := DefaultACP()
	a.Present = true
	a.Enabled, _ = t.boolean("enabled")
	if tr, ok := t.sub("transport"); ok {
		tr.unknown([]string{"stdio"}, "[acp.transport]")
		if st, ok := tr.sub("stdio"); ok {
			st.unknown([]string{"enabled"}, "[acp.transport.stdio]")
			if v, ok := st.boolean("enabled"); ok {
				a.StdioEnabled = v
			}
		}
	}
	if ag, ok := t.sub("agent"); ok {
		ag.unknown(acpAgentKeys, "[acp.agent]")
		for key, dst := range map[string]*string{"name": &a.Agent.Name, "version": &a.Agent.Version, "description": &a.Agent.Description} {
			if s, ok := ag.str(key); ok {
				*dst = strings.TrimSpace(s)
			}
		}
		if a.Agent.Name == "" {
			ag.c.report(ag.path.key("name"), "must not be empty")
			a.Agent.Name = "anvil-router"
		}
	}
	if cp, ok := t.sub("capabilities"); ok {
		cp.unknown(acpCapKeys, "[acp.capabilities]")
		for key, dst := range map[string]*bool{
			"load_session": &a.Capabilities.LoadSession, "image": &a.Capabilities.Image, "audio": &a.Capabilities.Audio,
			"embedded_context": &a.Capabilities.EmbeddedContext, "mcp": &a.Capabilities.MCP,
		} {
			if v, ok := cp.boolean(key); ok {
				*dst = v
			}
		}
	}
	if s, ok := t.str("default_model"); ok {
		if a.DefaultModel = strings.TrimSpace(s); a.DefaultModel == "" {
			t.c.report(t.path.key("default_model"), "must not be empty (leave it out to use the first model the router lists)")
		}
	}
	a.SystemPrompt, _ = t.str("system_prompt")
	a.CodingAgentMode, _ = t.boolean("coding_agent_mode")
	if p, ok := t.sub("permissions"); ok {
		p.unknown(acpPermKeys, "[acp.permissions]")
		if s, ok := p.str("default_policy"); ok {
			if !slices.Contains(acpPolicies, s) {
				p.c.report(p.path.key("default_policy"), "must be one of %s, got %q", strings.Join(acpPolicies, ", "), s)
			} else {
				a.Permissions.DefaultPolicy = s
			}
		}
		if p.has("auto_allow") {
			a.Permissions.AutoAllow = p.toolKinds("auto_allow")
		}
		if p.has("always_ask") {
			a.Permissions.AlwaysAsk = p.toolKinds("always_ask")
		}
		for _, k := range a.Permissions.AutoAllow {
			if slices.Contains(a.Permissions.AlwaysAsk, k) {
				p.c.report(p.path.key("always_ask"), "kind %q is also in auto_allow; a kind can be in only one list", k)
			}
		}
	}
	if s, ok := t.sub("sessions"); ok {
		s.unknown(acpSessionKeys, "[acp.sessions]")
		a.Sessions.MaxConcurrent = s.intIn("max_concurrent", 1, 10000, int64(a.Sessions.MaxConcurrent))
		a.Sessions.IdleTimeout = s.goDuration("idle_timeout", a.Sessions.IdleTimeout)
		if v, ok := s.str("storage"); ok {
			if !slices.Contains(acpStorageKinds, v) {
				s.c.report(s.path.key("storage"), "must be \"memory\" or \"file\", got %q", v)
			} else {
				a.Sessions.Storage = v
			}
		}
		a.Sessions.StoragePath = s.nonEmptyPath("storage_path")
		if a.Sessions.Storage == "file" && a.Sessions.StoragePath == "" {
			s.c.report(s.path.key("storage_path"), "is required when storage = \"file\"")
		}
	}
	if m, ok := t.sub("mcp"); ok {
		m.unknown(acpMCPKeys, "[acp.mcp]")
		a.MCP.MaxConnectionsPerSession = m.intIn("max_connections_per_session", 0, 100, int64(a.MCP.MaxConnectionsPerSession))
		a.MCP.AllowedServers = m.strings("allowed_servers")
		a.MCP.ServerSpawnTimeout = m.goDuration("server_spawn_timeout", a.MCP.ServerSpawnTimeout)
	}
	return a
}

// toolKinds reads a list of ACP tool kinds.
func (t table) toolKinds(key string) []string {
	out := []string{}
	for i, s := range t.strings(key) {
		if !slices.Contains(ACPToolKinds, s) {
			t.c.report(t.path.key(key).at(i), "unknown tool kind %q (want one of %s)", s, strings.Join(ACPToolKinds, ", "))
			continue
		}
		out = append(out, s)
	}
	return out
}

// goDuration reads a duration written like "1h" or "10s" (> 0).
func (t table) goDuration(key string, def time.Duration) time.Duration {
	s, ok := t.str(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		t.c.report(t.path.key(key), "must be a duration > 0 like \"90s\", \"10m\" or \"1h\", got %q", s)
		return def
	}
	return d
}

// Summary is the one-line view `anvil-router check` prints for [acp].
func (a ACP) Summary() string {
	state := "disabled"
	if a.Enabled {
		state = "enabled"
	}
	model := a.DefaultModel
	if model == "" {
		model = "the first listed model"
	}
	storage := a.Sessions.Storage
	if a.Sessions.StoragePath != "" {
		storage += " " + a.Sessions.StoragePath
	}
	return fmt.Sprintf("acp: %s, model %s, permissions %s, sessions %d (%s, idle %s), mcp %t\n",
		state, model, a.Permissions.DefaultPolicy, a.Sessions.MaxConcurrent, storage, a.Sessions.IdleTimeout, a.Capabilities.MCP)
}
