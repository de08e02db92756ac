package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// binary is the real anvil-router, built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "anvil-router-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "anvil-router")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building anvil-router: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "router.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tierConfig(baseURL string) string {
	return `
[server]
auth_env = "ANVIL_TEST_ROUTER_TOKEN"

[router]
[[router.tiers]]
id = "local-a"
base_url = "` + baseURL + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "ANVIL_TEST_SERVE_KEY"
model = "served-model"

[router.model_routes]
chat = "local-a"
llm.primary = "local-a"
`
}

func TestCommands(t *testing.T) {
	good := writeConfig(t, tierConfig("http://127.0.0.1:9"))
	bad := writeConfig(t, `
[router]
exhaustion_status = true
[[router.tiers]]
id = "a"
base_url = "ftp://x"
dialect = "openai"
context_limit = 0
privacy = "local"
tool_support = true
auth_env = "A"
[router.model_routes]
x = "a"
`)
	keysCfg := writeConfig(t, tierConfig("http://127.0.0.1:9")+"\n[api_keys]\nstore_path = \""+filepath.Join(t.TempDir(), "keys.json")+"\"\n")
	// check and serve refuse the same key tables, at the table's own line.
	inlineKey := func(lines string) string {
		return writeConfig(t, tierConfig("http://127.0.0.1:9")+"\n[api_keys]\n\n[[api_keys.api_keys]]\nid = \"k1\"\nuser_id = \"u\"\norganization_id = \"o\"\n"+lines)
	}
	scopesString := inlineKey("key = \"sk-0123456789abcdef0123\"\nscopes = \"read\"\n")
	unsetEnv := inlineKey("key = \"${ANVIL_TEST_UNSET_KEY}\"\nscopes = [\"read\"]\n")
	badScope := inlineKey("key = \"sk-0123456789abcdef0123\"\nscopes = [\"reed\"]\n")
	lineOf := func(path, needle string) string {
		data, _ := os.ReadFile(path)
		for i, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, needle) {
				return ":" + strconv.Itoa(i+1) + ": "
			}
		}
		return "no such line"
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout+stderr
	}{
		{"version", []string{"version"}, 0, []string{"anvil-router "}},
		{"check a good file", []string{"check", "--config", good}, 0, []string{"ok", "chat", "llm.primary", "local-a"}},
		{"check lists every error", []string{"check", "--config", bad}, 2, []string{"exhaustion_status", "base_url", "context_limit"}},
		{"check a missing file", []string{"check", "--config", filepath.Join(t.TempDir(), "none.toml")}, 2, []string{"none.toml"}},
		{"check: scopes as a string", []string{"check", "--config", scopesString}, 2, []string{lineOf(scopesString, "scopes") + "api_keys.api_keys[0].scopes"}},
		{"serve: scopes as a string, the same line", []string{"serve", "--config", scopesString, "--dev-listen", "127.0.0.1:0"}, 2, []string{lineOf(scopesString, "scopes") + "api_keys.api_keys[0].scopes"}},
		{"check: a key variable that is not set", []string{"check", "--config", unsetEnv}, 2, []string{lineOf(unsetEnv, "key =") + "api_keys.api_keys[0].key", "ANVIL_TEST_UNSET_KEY"}},
		{"serve: a key variable that is not set, the same line", []string{"serve", "--config", unsetEnv, "--dev-listen", "127.0.0.1:0"}, 2, []string{lineOf(unsetEnv, "key =") + "api_keys.api_keys[0].key"}},
		{"check: an unknown scope", []string{"check", "--config", badScope}, 2, []string{lineOf(badScope, "scopes") + "api_keys.api_keys[0].scopes", "reed"}},
		{"dev listener refuses a wildcard address", []string{"serve", "--config", good, "--dev-listen", "0.0.0.0:8000"}, 2, []string{"not a loopback address"}},
		{"dev listener refuses a LAN address", []string{"serve", "--config", good, "--dev-listen", "192.0.2.10:8000"}, 2, []string{"not a loopback address"}},
		{"dev listener refuses an empty host", []string{"serve", "--config", good, "--dev-listen", ":8000"}, 2, []string{"not a loopback address"}},
		{"serve without the token variable fails closed", []string{"serve", "--config", good, "--dev-listen", "127.0.0.1:0"}, 2, []string{"ANVIL_TEST_ROUTER_TOKEN"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"keys create writes the store and shows the key once", []string{"keys", "create", "--config", keysCfg, "--id", "ci-bot", "--user", "ci", "--org", "main"}, 0, []string{`"id": "ci-bot"`, `"key": "sk-anvil-`}},
		{"keys list shows it masked", []string{"keys", "list", "--config", keysCfg}, 0, []string{"ci-bot\tsk-***", "runtime"}},
		{"keys create needs an id", []string{"keys", "create", "--config", keysCfg, "--user", "u", "--org", "o"}, 2, []string{"--id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binary, tc.args...)
			cmd.Env = append(os.Environ(), "ANVIL_SERVING_HOME="+t.TempDir(), "HOME="+t.TempDir())
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, out)
			}
			for _, s := range tc.wantOut {
				if !strings.Contains(string(out), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("router at %s never became healthy", base)
}

// TestServeDrainsStreamsOnSIGTERM: a stream in flight when SIGTERM arrives
// runs to its [DONE]; new connections are refused; the process exits 0.
func TestServeDrainsStreamsOnSIGTERM(t *testing.T) {
	deltas := strings.Split(strings.Repeat("tok ", 20), " ")[:20]
	fake, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model", Deltas: deltas, Pace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	addr := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(binary, "serve", "--config", writeConfig(t, tierConfig(url)), "--dev-listen", addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "ANVIL_TEST_ROUTER_TOKEN=tok-secret-1234", "ANVIL_SERVING_HOME="+t.TempDir())
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := "http://" + addr
	waitHealthy(t, base)

	req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"chat","stream":true}`))
	req.Header.Set("Authorization", "Bearer tok-secret-1234")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil { // first event is flowing
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("stream broken by shutdown: %v", err)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream did not finish: %q", rest)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, logs.String())
	}
	if fake.Stats().Completed != 1 {
		t.Errorf("serve stats %+v", fake.Stats())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after shutdown")
	}
	if strings.Contains(logs.String(), "tok-secret-1234") {
		t.Error("router token in logs")
	}
}

// TestDemo runs the README's first command and follows its printed
// instructions.
func TestDemo(t *testing.T) {
	addr := freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "--listen", addr, "--pace", "1ms")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	sawCurl := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "curl -N http://"+addr+"/v1/chat/completions") {
			sawCurl = true
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if !sawCurl {
		t.Fatal("demo printed no curl command")
	}
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"Hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"content":"fake "`) || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("demo chat: %d %s", resp.StatusCode, b)
	}
}
