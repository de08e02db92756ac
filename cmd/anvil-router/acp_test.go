package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/acp"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestACPCommand: the acp subcommand's refusals happen before any
// protocol traffic, with exit status 2 and nothing on stdout (which
// belongs to the protocol).
func TestACPCommand(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	on := file("on.toml", "[acp]\nenabled = true\ndefault_model = \"chat\"\n")
	cases := []struct {
		name       string
		args       []string
		env        []string
		code       int
		stdout     string
		stderrPart string
	}{
		{"check prints the summary", []string{"acp", "--config", on, "--check"}, nil, 0, "acp: enabled, model chat, permissions ask_always, sessions 10 (memory, idle 1h0m0s), mcp true\n", ""},
		{"serve --mode stdio is the agent", []string{"serve", "--mode", "stdio", "--config", on, "--check"}, nil, 0, "acp: enabled, model chat, permissions ask_always, sessions 10 (memory, idle 1h0m0s), mcp true\n", ""},
		{"serve --mode=stdio too", []string{"serve", "--config", on, "--mode=stdio", "--check"}, nil, 0, "acp: enabled, model chat, permissions ask_always, sessions 10 (memory, idle 1h0m0s), mcp true\n", ""},
		{"disabled", []string{"acp", "--config", file("off.toml", "[acp]\ndefault_model = \"chat\"\n")}, nil, 2, "", "ACP is disabled"},
		{"no [acp] table", []string{"acp", "--config", file("none.toml", "[router]\n")}, nil, 2, "", "ACP is disabled"},
		{"bad table", []string{"acp", "--config", file("bad.toml", "[acp]\nenabled = true\n[acp.permissions]\ndefault_policy = \"yolo\"\n")}, nil, 2, "", "acp.permissions.default_policy"},
		{"stdio off", []string{"acp", "--config", file("nostdio.toml", "[acp]\nenabled = true\n[acp.transport.stdio]\nenabled = false\n")}, nil, 2, "", "stdio is the only transport"},
		{"bad router URL", []string{"acp", "--router", "anvil:80"}, nil, 2, "", "--router must be an http(s) URL"},
		{"tsnet without an auth key", []string{"acp", "--tsnet"}, []string{"TS_AUTHKEY="}, 2, "", "TS_AUTHKEY"},
		{"no token flag", []string{"acp", "--token", "x"}, nil, 2, "", "flag provided but not defined: -token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binary, tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || stdout.String() != tc.stdout || !strings.Contains(stderr.String(), tc.stderrPart) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderrPart)
			}
		})
	}
}

// The agent's policy names are the config's: a policy read from the file
// must mean the same to the agent.
func TestAgentConfigPolicies(t *testing.T) {
	for _, p := range [][2]string{{config.ACPAskAlways, acp.PolicyAskAlways}, {config.ACPAllowRead, acp.PolicyAllowRead}, {config.ACPAllowAll, acp.PolicyAllowAll}} {
		if p[0] != p[1] {
			t.Errorf("config policy %q is %q for the agent", p[0], p[1])
		}
	}
	c := config.DefaultACP()
	c.DefaultModel = "chat"
	got := agentConfig(c)
	if got.DefaultModel != "chat" || got.Permissions.DefaultPolicy != acp.PolicyAskAlways || got.Sessions.MaxConcurrent != 10 || !got.Capabilities.MCP {
		t.Errorf("agentConfig(defaults) = %+v", got)
	}
}
