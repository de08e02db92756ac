package tsrouter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// webuiDir holds the browser suite (playwright-core pinned in its
// package-lock.json); CI runs npm ci there and installs Debian's chromium.
const webuiDir = "testdata/webui"

// webuiInsideEnv marks the test binary re-run inside the namespace.
const webuiInsideEnv = "ANVIL_WEBUI_NETNS"

const chromiumPath = "/usr/bin/chromium"

// TestWebUIBrowser drives the web UI in real headless Chromium against
// the real router on loopback: admin login, every page rendered (and
// screenshotted at desktop and phone width), a key created, rotated and
// disabled through the UI and used by a plain HTTP client, a tier
// quiesced and readmitted, forged writes refused, nothing secret in the
// browser's storage, the CSP blocking an inline script, no console
// errors.
//
// Chromium may phone home, so it runs in a fresh network namespace whose
// only interface is loopback, with the router and the fake serve: the
// test binary re-runs itself there (as TestCodexCLI does). Screenshots go
// to $ANVIL_WEBUI_SHOTS, else a new temporary directory (logged).
func TestWebUIBrowser(t *testing.T) {
	script, err := filepath.Abs(filepath.Join(webuiDir, "ui.test.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(webuiInsideEnv) == "1" {
		webuiSession(t, script)
		return
	}
	for _, need := range []struct{ path, msg string }{
		{filepath.Join(webuiDir, "node_modules", "playwright-core"), "tsrouter/testdata/webui/node_modules is missing; install it with: npm ci --prefix tsrouter/testdata/webui"},
		{chromiumPath, chromiumPath + " is missing; install Debian's chromium: apt-get install -y chromium"},
	} {
		if _, err := os.Stat(need.path); err != nil {
			if os.Getenv("ANVIL_SDK") == "1" {
				t.Fatal(need.msg + " (ANVIL_SDK=1 requires the suite)")
			}
			t.Skip(need.msg)
		}
	}
	shots := os.Getenv("ANVIL_WEBUI_SHOTS")
	if shots == "" {
		if shots, err = os.MkdirTemp("", "anvil-webui-shots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("anvil-webui-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING THE BROWSER TEST: cannot create a network namespace (root and iproute2 needed): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestWebUIBrowser$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), webuiInsideEnv+"=1", "ANVIL_WEBUI_SHOTS="+shots)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	t.Logf("screenshots: %s", shots)
	if err != nil {
		t.Fatalf("the browser session inside the namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestWebUIBrowser") {
		t.Fatal("the browser session inside the namespace did not pass")
	}
}

// webuiConfig: one tier (with its model identity checked, so it can be
// readmitted), API keys in blocking mode (so a rotated or
// disabled key is refused, not ignored).
func webuiConfig(fakeURL string) string {
	return oneTier(fakeURL, "health_path = \"/health\"\nmodel_identity = true") + `
[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "${TRAFFIC_KEY}"
id = "key-traffic"
user_id = "dashboard"
organization_id = "anvil"
scopes = ["read", "write"]

[guardrails]
enabled = true
mode = "enforce"

[[guardrails.providers]]
name = "pii-redaction"
type = "pii"
stages = ["input"]
[guardrails.providers.options]
default_action = "mask"
`
}

// webuiSession is the part that runs inside the namespace.
func webuiSession(t *testing.T, script string) {
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback == 0 {
			t.Fatalf("interface %s is not loopback: refusing to run Chromium outside a loopback-only namespace", ifc.Name)
		}
	}
	_, fakeURL := startFake(t, fakeserve.Options{})
	const token = "router-token-for-the-browser-0123456789"
	const trafficKey = "sk-traffic-for-the-dashboard-0123456789"
	srv := httptest.NewServer(newHandler(t, webuiConfig(fakeURL), routerOpts{token: token, env: map[string]string{"SERVE_A_KEY": "k", "TRAFFIC_KEY": trafficKey}}, nil))
	t.Cleanup(srv.Close)
	base := srv.URL
	// Some traffic, so the dashboard and the decision log have numbers,
	// and one e-mail address for the guardrails page to count (masked).
	for i := range 5 {
		say := "hi"
		if i == 0 {
			say = "mail me at pat@example.com"
		}
		// The last one streamed, so the dashboard has a time to first token.
		resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":`+strconv.FormatBool(i == 4)+`,"messages":[{"role":"user","content":"`+say+`"}]}`,
			"Authorization", "Bearer "+token, "X-Api-Key", trafficKey)
		readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("traffic: %d", resp.StatusCode)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(sdkEnviron(), "ANVIL_BASE="+base, "ANVIL_CREDENTIAL="+token, "ANVIL_SHOTS="+os.Getenv("ANVIL_WEBUI_SHOTS"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var passed bool
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if req, ok := strings.CutPrefix(line, "CHECK "); ok {
			t.Log("CHECK " + maskKey(req))
			answer := "ok"
			if err := webuiCheck(ctx, base, token, req); err != nil {
				answer = err.Error()
				t.Errorf("check %s: %v", req, err)
			}
			io.WriteString(stdin, strings.ReplaceAll(answer, "\n", " ")+"\n")
		}
		if !strings.HasPrefix(line, "CHECK ") {
			t.Log(line)
		}
		passed = passed || line == "WEBUI OK"
	}
	err = cmd.Wait()
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", stderr.String())
	}
	if err != nil || !passed {
		t.Fatalf("the browser suite failed: %v", err)
	}
}

// webuiCheck answers one of the suite's CHECK requests with a plain HTTP
// client: {"key","want"} sends a chat request with the key (and the
// router token) and wants that status; {"tier","state"} wants the tier's
// admission state.
func webuiCheck(ctx context.Context, base, token, req string) error {
	var c struct {
		Key   string `json:"key"`
		Want  int    `json:"want"`
		Tier  string `json:"tier"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(req), &c); err != nil {
		return err
	}
	if c.Key != "" {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-Api-Key", c.Key)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.Want {
			return fmt.Errorf("chat with the key: %d %.200s, want %d", resp.StatusCode, body, c.Want)
		}
		return nil
	}
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/admin/transition?tier_id="+c.Tier, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st struct {
		Tiers []struct {
			State string `json:"state"`
		} `json:"tiers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.Tiers) != 1 {
		return fmt.Errorf("transition status: %d %v", resp.StatusCode, err)
	}
	if st.Tiers[0].State != c.State {
		return fmt.Errorf("tier %s is %s, want %s", c.Tier, st.Tiers[0].State, c.State)
	}
	return nil
}

// maskKey keeps API keys the UI created out of the test log.
func maskKey(s string) string {
	return regexp.MustCompile(`sk-anvil-[A-Za-z0-9_-]{4}[A-Za-z0-9_-]*`).ReplaceAllStringFunc(s, func(k string) string { return k[:13] + "…" })
}
