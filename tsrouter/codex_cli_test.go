package tsrouter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// codexDir holds the pinned @openai/codex (package-lock.json); CI runs
// npm ci there.
const codexDir = "testdata/codex"

// codexInsideEnv marks the test binary re-run inside the network
// namespace.
const codexInsideEnv = "ANVIL_CODEX_NETNS"

// codexMarker is what the scripted shell command prints; it must come
// back to the serve as the tool result and to the user in the answer.
const codexMarker = "anvil-codex-ok"

// TestCodexCLI runs a whole `codex exec` session of the real OpenAI Codex
// CLI through the router's /v1/responses: the fake serve answers the
// prompt with an exec_command call, Codex runs the command and sends its
// output back, the serve answers with text quoting it, and Codex exits 0.
//
// Codex may phone home (telemetry, update checks), so it runs in a fresh
// network namespace whose only interface is loopback, together with the
// router and the fake serve: the test binary re-runs itself there (ip
// netns exec). Without root or iproute2 the namespace cannot be made and
// the test skips loudly; without the installed package it skips, unless
// ANVIL_SDK=1 (CI), where that is a failure.
func TestCodexCLI(t *testing.T) {
	codex, err := filepath.Abs(filepath.Join(codexDir, "node_modules", ".bin", "codex"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(codexInsideEnv) == "1" {
		codexSession(t, codex)
		return
	}
	if _, err := os.Stat(codex); err != nil {
		msg := "tsrouter/testdata/codex/node_modules is missing; to run the real Codex CLI install it with: npm ci --prefix tsrouter/testdata/codex"
		if os.Getenv("ANVIL_SDK") == "1" {
			t.Fatal(msg + " (ANVIL_SDK=1 requires the suite)")
		}
		t.Skip(msg)
	}
	ns := fmt.Sprintf("anvil-codex-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING THE REAL CODEX CLI TEST: cannot create a network namespace (root and iproute2 needed): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestCodexCLI$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), codexInsideEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the Codex session inside the namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestCodexCLI") {
		t.Fatal("the Codex session inside the namespace did not pass")
	}
}

// codexSession is the part that runs inside the namespace.
func codexSession(t *testing.T, codex string) {
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s is not loopback: refusing to run Codex outside a loopback-only namespace", ifc.Name)
		}
	}
	fake, fakeURL := startFake(t, fakeserve.Options{})
	var logs syncBuffer
	srv := httptest.NewServer(newHandler(t, codexConfig(fakeURL), routerOpts{env: map[string]string{"SERVE_A_KEY": "serve-key"}}, slog.New(slog.NewJSONHandler(&logs, nil))))
	t.Cleanup(srv.Close)
	base := srv.URL
	// Which hosted tools this Codex declared (dropped, with the warning)
	// shows in the audit lines.
	t.Cleanup(func() { t.Logf("router audit lines:\n%s", logs.String()) })

	home := t.TempDir()
	conf := `model = "chat"
model_provider = "anvil"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.anvil]
name = "anvil"
base_url = "` + base + `/v1"
wire_api = "responses"
`
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		// call is the scripted tool call, as the serve names it.
		call, args string
		// result must be in the tool result Codex sends back: proof that
		// Codex ran the call it was given.
		result string
	}{
		{"exec_command runs echo", "exec_command", `{"cmd":"echo ` + codexMarker + `"}`, codexMarker},
		// A namespace member's call goes back to Codex as name wait_agent
		// in namespace multi_agent_v1: its own wait_agent handler answers
		// (rejecting the made-up agent id), and the call comes back in the
		// history under the flattened name.
		{"namespaced multi_agent_v1 call", "multi_agent_v1__wait_agent", `{"targets":["not-an-agent"],"timeout_ms":10000}`, "agent id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			codexExec(t, codex, home, fakeserve.ScriptPrefix+tc.call+" "+tc.args)
			last := string(fake.LastRequest().Body)
			if !strings.Contains(last, `"name":"`+tc.call+`"`) || !strings.Contains(last, `"role":"tool"`) || !strings.Contains(last, tc.result) {
				t.Fatalf("the serve's last request carries no %s call with a tool result containing %q: %.3000s", tc.call, tc.result, last)
			}
		})
	}
	// This Codex declares web_search, which no serve runs: it is dropped,
	// and the audit line says so.
	if !strings.Contains(logs.String(), `"detail":"hosted tools dropped: web_search"`) {
		t.Errorf("no audit line reports the dropped web_search tool")
	}
	// What Codex declared, as the serve saw it: namespace members arrive
	// flattened, hosted tools not at all.
	var up struct {
		Tools []struct {
			Function struct{ Name string } `json:"function"`
		} `json:"tools"`
	}
	json.Unmarshal(fake.LastRequest().Body, &up)
	var names []string
	for _, tl := range up.Tools {
		names = append(names, tl.Function.Name)
	}
	t.Logf("tools offered to the serve: %s", strings.Join(names, ", "))
	if !slices.Contains(names, "exec_command") {
		t.Errorf("exec_command not among the serve's tools")
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "multi_agent_v1__") }) {
		t.Errorf("no flattened multi_agent_v1 namespace member among the serve's tools")
	}
}

// codexExec runs one `codex exec` session with prompt and checks it ended
// well: exit status 0 and the serve's final answer (quoting the tool
// result) printed.
func codexExec(t *testing.T, codex, home, prompt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, codex, "exec", "--skip-git-repo-check", "--color", "never", prompt)
	cmd.Dir = t.TempDir()
	cmd.Stdin = strings.NewReader("")
	cmd.Env = append(sdkEnviron(), "CODEX_HOME="+home, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("codex exec:\n%s", out)
	if err != nil {
		t.Fatalf("codex exec: %v", err)
	}
	if !strings.Contains(string(out), fakeserve.ToolResultPrefix) {
		t.Fatalf("codex printed no final answer starting %q", fakeserve.ToolResultPrefix)
	}
}

// codexConfig is one OpenAI tier with a context window that fits Codex's
// prompt (its instructions and tool schemas are tens of kilobytes).
func codexConfig(baseURL string) string {
	return strings.Replace(oneTier(baseURL, ""), "context_limit = 8192", "context_limit = 262144", 1)
}
