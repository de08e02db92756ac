package acp

import "time"

// Config is what the agent needs of the [acp] table. The command fills it
// from the router file's parser; this package does not read files.
type Config struct {
	// Agent names the agent in initialize's agentInfo.
	Agent AgentInfo
	// Capabilities are advertised in initialize.
	Capabilities Capabilities
	// DefaultModel is the router alias every turn uses; empty means the
	// first model the router lists for the caller.
	DefaultModel string
	// SystemPrompt is put before every conversation; CodingAgentMode adds
	// the built-in coding-agent prompt.
	SystemPrompt    string
	CodingAgentMode bool
	Permissions     Permissions
	Sessions        Sessions
	MCP             MCPLimits
}

// AgentInfo names the agent to the editor.
type AgentInfo struct {
	Name, Version, Description string
}

// Capabilities are the agent capabilities advertised in initialize.
type Capabilities struct {
	LoadSession     bool
	Image           bool
	Audio           bool
	EmbeddedContext bool
	MCP             bool
}

// Permissions decide which tool calls run without asking the user.
type Permissions struct {
	// DefaultPolicy is PolicyAskAlways, PolicyAllowRead or PolicyAllowAll.
	DefaultPolicy string
	// AutoAllow are tool kinds that run without asking; AlwaysAsk are kinds
	// that ask even when the default policy would allow them.
	AutoAllow []string
	AlwaysAsk []string
}

// The default policies.
const (
	PolicyAskAlways = "ask_always"
	PolicyAllowRead = "allow_read"
	PolicyAllowAll  = "allow_all"
)

// Sessions bounds the agent's sessions.
type Sessions struct {
	MaxConcurrent int
	IdleTimeout   time.Duration
	// Storage is "memory" or "file"; StoragePath is the file store's
	// directory.
	Storage     string
	StoragePath string
}

// MCPLimits bound the MCP servers an editor may hand the agent.
type MCPLimits struct {
	MaxConnectionsPerSession int
	// AllowedServers are the server names accepted (empty: all).
	AllowedServers     []string
	ServerSpawnTimeout time.Duration
}
