package tsrouter_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// acpDir is the Node project of the ACP editor suite
// (@agentclientprotocol/sdk and @modelcontextprotocol/server-everything
// pinned in its package-lock.json).
const acpDir = "testdata/acp"

// acpKey may use the "chat" and "slow" tiers, not "fast".
const acpKey = "sk-acp-tests-0123456789abcdef"

var acpReasoning = []string{"Let me", " think."}

func acpRouterConfig(okURL, slowURL string) string {
	tier := func(id, url string) string {
		return `
[[router.tiers]]
id = "` + id + `"
base_url = "` + url + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "SERVE_KEY"
model = "served-model"
`
	}
	return `
[router]
relay_timeout = 5.0
` + tier("local-a", okURL) + tier("local-slow", slowURL) + tier("local-b", okURL) + `
[router.model_routes]
chat = "local-a"
slow = "local-slow"
fast = "local-b"

[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "${ACP_KEY}"
id = "key-acp"
user_id = "acp-tests"
organization_id = "anvil"
scopes = ["read", "write"]
allowed_backends = ["local-a", "local-slow"]
`
}

// acpAgentConfig is an agent file: model, file storage in dir.
func acpAgentConfig(model, storage string) string {
	return `
[acp]
enabled = true
default_model = "` + model + `"
coding_agent_mode = true
system_prompt = "Answer briefly."

[acp.agent]
name = "anvil-router"
version = "test"
description = "anvil-router ACP agent under test"

[acp.permissions]
default_policy = "ask_always"

[acp.sessions]
max_concurrent = 4
idle_timeout = "1h"
storage = "file"
storage_path = "` + storage + `"

[acp.mcp]
max_connections_per_session = 2
allowed_servers = ["everything"]
server_spawn_timeout = "30s"
`
}

// TestACPEditor runs the official ACP TypeScript SDK as the editor
// (tsrouter/testdata/acp, node:test) against the real `anvil-router acp`
// binary, a real router and fake serves on loopback: streamed text and
// thinking, editor file tools with permissions, a terminal, cancel, load
// after a restart, an MCP server from npm, a key that forbids the model,
// and broken JSON-RPC.
//
// Without node or the installed packages the test skips, unless
// ANVIL_SDK=1 (CI), where that is a failure.
func TestACPEditor(t *testing.T) {
	node, err := exec.LookPath("node")
	missing := ""
	if err != nil {
		missing = "node (20 or later) is not on PATH"
	} else if _, err := os.Stat(filepath.Join(acpDir, "node_modules")); err != nil {
		missing = "tsrouter/testdata/acp/node_modules is missing"
	}
	if missing != "" {
		msg := missing + "; to run the ACP editor suite install it with: npm ci --prefix tsrouter/testdata/acp"
		if os.Getenv("ANVIL_SDK") == "1" {
			t.Fatal(msg + " (ANVIL_SDK=1 requires the suite)")
		}
		t.Skip(msg)
	}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "anvil-router")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/anvil-router")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	_, okURL := startFake(t, fakeserve.Options{Reasoning: acpReasoning})
	slow, slowURL := startFake(t, fakeserve.Options{Pace: 300 * time.Millisecond, Deltas: strings.Split("one two three four five six seven eight nine ten", " ")})
	base := startRouter(t, acpRouterConfig(okURL, slowURL), routerOpts{token: routerToken, env: map[string]string{"ACP_KEY": acpKey, "SERVE_KEY": "serve-key"}})

	configs := map[string]string{}
	for name, model := range map[string]string{"MAIN": "chat", "SLOW": "slow", "FORBIDDEN": "fast"} {
		p := filepath.Join(tmp, strings.ToLower(name)+".toml")
		if err := os.WriteFile(p, []byte(acpAgentConfig(model, filepath.Join(tmp, "sessions-"+strings.ToLower(name)))), 0o600); err != nil {
			t.Fatal(err)
		}
		configs[name] = p
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	tap := filepath.Join(tmp, "results.tap")
	cmd := exec.CommandContext(ctx, node, "--test", "--test-concurrency=1",
		"--test-reporter=spec", "--test-reporter-destination=stdout",
		"--test-reporter=tap", "--test-reporter-destination="+tap)
	cmd.Dir = acpDir
	cmd.Env = append(sdkEnviron(),
		"ANVIL_ACP_BIN="+bin,
		"ANVIL_ACP_CONFIG_MAIN="+configs["MAIN"],
		"ANVIL_ACP_CONFIG_SLOW="+configs["SLOW"],
		"ANVIL_ACP_CONFIG_FORBIDDEN="+configs["FORBIDDEN"],
		"ANVIL_BASE_URL="+base,
		"ANVIL_TOKEN="+routerToken,
		"ANVIL_KEY="+acpKey,
		"ANVIL_TEXT="+strings.Join(fakeserve.DefaultDeltas(), ""),
		"ANVIL_REASONING="+strings.Join(acpReasoning, ""),
		"ANVIL_TOOL_PREFIX="+fakeserve.ToolResultPrefix,
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node --test: %v (see the log above)", err)
	}
	data, err := os.ReadFile(tap)
	if err != nil {
		t.Fatal(err)
	}
	counts := tapCounts(string(data))
	if counts["pass"] == 0 || counts["fail"] != 0 || counts["cancelled"] != 0 || counts["skipped"] != 0 {
		t.Fatalf("node ran no passing tests, or hid failures or skips: %v", counts)
	}
	t.Logf("node --test: %d passed", counts["pass"])
	// Cancelling the turn must close the model request all the way to the
	// serve, not just stop relaying it.
	if got := slow.Stats().Cancelled; got < 1 {
		t.Errorf("the slow serve saw %d cancelled requests, want at least 1 (session/cancel must close the model request)", got)
	}
}
