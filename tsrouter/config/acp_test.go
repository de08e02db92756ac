package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// seedACP is every [acp] option, written the way the spec's example sets
// them (in TOML).
const seedACP = `
[acp]
enabled = true
default_model = "gpt-4o"
system_prompt = "You are a helpful coding assistant."
coding_agent_mode = true

[acp.transport.stdio]
enabled = true

[acp.agent]
name = "Continuum Router"
version = "1.0.0"
description = "Local LLM inference agent"

[acp.capabilities]
load_session = true
image = false
audio = false
embedded_context = false
mcp = true

[acp.permissions]
default_policy = "ask_always"
auto_allow = ["read", "search", "think"]
always_ask = ["edit", "delete", "execute"]

[acp.sessions]
max_concurrent = 10
idle_timeout = "1h"
storage = "file"
storage_path = "/var/lib/anvil/acp"

[acp.mcp]
max_connections_per_session = 5
allowed_servers = ["fs"]
server_spawn_timeout = "10s"
`

func TestACPSeedOptions(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines(), seedACP))
	want := config.ACP{
		Present: true, Enabled: true, StdioEnabled: true,
		Agent:           config.ACPAgent{Name: "Continuum Router", Version: "1.0.0", Description: "Local LLM inference agent"},
		Capabilities:    config.ACPCapabilities{LoadSession: true, MCP: true},
		DefaultModel:    "gpt-4o",
		SystemPrompt:    "You are a helpful coding assistant.",
		CodingAgentMode: true,
		Permissions:     config.ACPPermissions{DefaultPolicy: "ask_always", AutoAllow: []string{"read", "search", "think"}, AlwaysAsk: []string{"edit", "delete", "execute"}},
		Sessions:        config.ACPSessions{MaxConcurrent: 10, IdleTimeout: time.Hour, Storage: "file", StoragePath: "/var/lib/anvil/acp"},
		MCP:             config.ACPMCP{MaxConnectionsPerSession: 5, AllowedServers: []string{"fs"}, ServerSpawnTimeout: 10 * time.Second},
	}
	if !reflect.DeepEqual(cfg.ACP, want) {
		t.Errorf("got  %+v\nwant %+v", cfg.ACP, want)
	}
	if got, want := cfg.Summary(), "acp: enabled, model gpt-4o, permissions ask_always, sessions 10 (file /var/lib/anvil/acp, idle 1h0m0s), mcp true\n"; !strings.HasSuffix(got, want) {
		t.Errorf("check summary %q does not end with %q", got, want)
	}
	// The agent reads the same table from a file without [router].
	a, err := config.ParseACP("agent.toml", []byte(seedACP))
	if err != nil || !reflect.DeepEqual(a, want) {
		t.Errorf("ParseACP = %+v, %v", a, err)
	}
}

func TestACPDefaults(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines(), ""))
	if cfg.ACP.Present || cfg.ACP.Enabled {
		t.Errorf("ACP is on without an [acp] table: %+v", cfg.ACP)
	}
	d := config.DefaultACP()
	if d.Permissions.DefaultPolicy != "ask_always" || d.Sessions.MaxConcurrent != 10 || d.Sessions.IdleTimeout != time.Hour ||
		d.Sessions.Storage != "memory" || d.MCP.MaxConnectionsPerSession != 5 || d.MCP.ServerSpawnTimeout != 10*time.Second || !d.StdioEnabled {
		t.Errorf("defaults differ from the spec's table: %+v", d)
	}
}

func TestACPProblems(t *testing.T) {
	cases := []struct {
		name, acp string
		wants     []want
	}{
		{"unknown key", "[acp]\nenabeld = true\n", []want{{"acp.enabeld", "enabeld", "unknown field in [acp]"}}},
		{"bad policy", "[acp.permissions]\ndefault_policy = \"allow_some\"\n", []want{{"acp.permissions.default_policy", "allow_some", "ask_always, allow_read, allow_all"}}},
		{"unknown kind", "[acp.permissions]\nauto_allow = [\"read\", \"browse\"]\n", []want{{"acp.permissions.auto_allow[1]", "browse", "unknown tool kind"}}},
		{"kind in both lists", "[acp.permissions]\nauto_allow = [\"edit\"]\nalways_ask = [\"edit\"]\n", []want{{"acp.permissions.always_ask", "always_ask", "also in auto_allow"}}},
		{"file storage without a path", "[acp.sessions]\nstorage = \"file\"\n", []want{{"acp.sessions.storage_path", "[acp.sessions]", "required"}}},
		{"bad storage", "[acp.sessions]\nstorage = \"redis\"\n", []want{{"acp.sessions.storage", "redis", "memory"}}},
		{"bad duration", "[acp.sessions]\nidle_timeout = \"soon\"\n", []want{{"acp.sessions.idle_timeout", "soon", "duration"}}},
		{"zero sessions", "[acp.sessions]\nmax_concurrent = 0\n", []want{{"acp.sessions.max_concurrent", "max_concurrent", "between 1"}}},
		{"negative spawn timeout", "[acp.mcp]\nserver_spawn_timeout = \"-1s\"\n", []want{{"acp.mcp.server_spawn_timeout", "-1s", "duration > 0"}}},
		{"unknown transport", "[acp.transport.websocket]\nenabled = true\n", []want{{"acp.transport.websocket", "[acp.transport.websocket]", "unknown field"}}},
		{"empty default model", "[acp]\ndefault_model = \" \"\n", []want{{"acp.default_model", "default_model", "must not be empty"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, doc("", tierLines(), tc.acp), tc.wants)
		})
	}
}
