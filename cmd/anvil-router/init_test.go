package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// initServe is a fake serve for the init tests: vLLM-like, on a loopback
// port, streaming one recognisable delta.
type initServe struct {
	port  int
	model string
	delta string
}

func startInitServe(t *testing.T, model string, maxLen int, apiKey string) initServe {
	t.Helper()
	delta := "from " + model
	_, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{
		Model: model, Deltas: []string{delta}, ReportedMaxModelLen: maxLen, APIKey: apiKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	port, err := strconv.Atoi(url[strings.LastIndex(url, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return initServe{port: port, model: model, delta: delta}
}

func unusedPort(t *testing.T) int {
	t.Helper()
	addr, err := fakeserve.UnusedLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	return p
}

func ports(ps ...int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// runBinary runs the real anvil-router with env added to a clean home.
func runBinary(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(os.Environ(), append([]string{"ANVIL_SERVING_HOME=" + t.TempDir(), "HOME=" + t.TempDir()}, env...)...)
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestInitWritesAConfigThatServes: init against two fake serves (one
// reporting max_model_len, one not, one behind an API key) and a silent
// port writes a config that check accepts and serve routes by alias to the
// right serve — with no secret in the file.
func TestInitWritesAConfigThatServes(t *testing.T) {
	const serveKey = "serve-secret-key-0123456789"
	big := startInitServe(t, "qwen3-8b", 32768, serveKey)
	small := startInitServe(t, "Qwen/Qwen3-4B", -1, "")
	silent := unusedPort(t)
	keyEnv := "ANVIL_SERVE_KEY_" + strconv.Itoa(big.port) + "=" + serveKey
	out := filepath.Join(t.TempDir(), "router.toml")

	code, stdout := runBinary(t, []string{keyEnv}, "init", "--ports", ports(big.port, small.port, silent), "--out", out)
	if code != 0 {
		t.Fatalf("init: exit %d\n%s", code, stdout)
	}
	for _, want := range []string{
		"127.0.0.1:" + strconv.Itoa(silent) + " ", "nothing listening",
		out + ": ok", // the check code path ran
		"qwen3-8b → vllm-" + strconv.Itoa(big.port) + "-qwen3-8b (qwen3-8b, port " + strconv.Itoa(big.port) + ", context 32768)",
		"qwen3-4b → vllm-" + strconv.Itoa(small.port) + "-qwen3-4b (Qwen/Qwen3-4B, port " + strconv.Itoa(small.port) + ", context 8192 (default",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init output lacks %q:\n%s", want, stdout)
		}
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw)+stdout, serveKey) {
		t.Fatal("the serve's API key was written or printed")
	}
	if !strings.Contains(string(raw), "# CHECK: the serve did not report max_model_len; 8192 is init's default.\ncontext_limit = 8192\n") {
		t.Errorf("the default context is not flagged:\n%s", raw)
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.AuthEnv != "ANVIL_ROUTER_TOKEN" || cfg.Server.LocalListen != "127.0.0.1:8080" || cfg.Tailnet.Hostname != "anvil" {
		t.Errorf("[server] %+v [tailnet] %+v", cfg.Server, cfg.Tailnet)
	}
	wantTiers := []struct {
		port    int
		model   string
		context int
		authEnv string
	}{
		{big.port, "qwen3-8b", 32768, "ANVIL_SERVE_KEY_" + strconv.Itoa(big.port)},
		{small.port, "Qwen/Qwen3-4B", 8192, "ANVIL_SERVE_KEY_" + strconv.Itoa(small.port)},
	}
	if len(cfg.Router.Tiers) != len(wantTiers) {
		t.Fatalf("tiers %+v", cfg.Router.Tiers)
	}
	for i, w := range wantTiers {
		got := cfg.Router.Tiers[i]
		if got.BaseURL != "http://127.0.0.1:"+strconv.Itoa(w.port)+"/v1" || got.Model != w.model || got.ContextLimit != w.context ||
			got.AuthEnv != w.authEnv || got.Dialect != "openai" || got.HealthPath != "/health" || !got.ModelIdentity {
			t.Errorf("tier %d: %+v", i, got)
		}
	}

	if code, o := runBinary(t, nil, "check", "--config", out); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, o)
	}

	// serve routes each alias to its serve.
	addr := freePort(t)
	var logs bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary, "serve", "--config", out, "--dev-listen", addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "ANVIL_ROUTER_TOKEN=router-token-abc", keyEnv, "ANVIL_SERVING_HOME="+t.TempDir(), "TS_STATE_DIR="+t.TempDir())
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	waitHealthy(t, base)
	routes := []struct {
		name  string
		alias string
		want  string
	}{
		{"alias of the serve reporting max_model_len", "qwen3-8b", big.delta},
		{"alias of the serve without it", "qwen3-4b", small.delta},
	}
	for _, tc := range routes {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/chat/completions",
				strings.NewReader(`{"model":"`+tc.alias+`","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer router-token-abc")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var reply struct {
				Choices []struct {
					Message struct {
						Content string `json:"content"`
					} `json:"message"`
				} `json:"choices"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(body, &reply) != nil || len(reply.Choices) != 1 || reply.Choices[0].Message.Content != tc.want {
				t.Errorf("%s: %d %s (logs %s)", tc.alias, resp.StatusCode, body, logs.String())
			}
		})
	}
}

// TestInitRefusals: init writes nothing it should not, and says why.
func TestInitRefusals(t *testing.T) {
	serve := startInitServe(t, "qwen3-8b", 0, "")
	notAServe := httptest.NewServer(http.NotFoundHandler())
	defer notAServe.Close()
	notAServePort, _ := strconv.Atoi(notAServe.URL[strings.LastIndex(notAServe.URL, ":")+1:])
	silent := unusedPort(t)
	repoCompose, err := os.ReadFile(filepath.Join(repoRoot(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		existing   string // --out's content before the run ("" = absent)
		compose    bool   // pass a copy of the repository's compose.yaml
		args       []string
		wantCode   int
		wantOut    []string
		wantOutput bool // --out exists afterwards with init's config
	}{
		{"an existing file is kept without --force", "keep me\n", false, []string{"--ports", ports(serve.port)}, 2, []string{"exists", "--force"}, false},
		{"an existing file is replaced with --force", "keep me\n", false, []string{"--ports", ports(serve.port), "--force"}, 0, []string{"qwen3-8b →"}, true},
		{"no serve found", "", false, []string{"--ports", ports(silent)}, 1, []string{"no OpenAI-compatible serve found", "nothing listening"}, false},
		{"a port answering something else is no serve", "", false, []string{"--ports", ports(notAServePort, silent)}, 1, []string{"/v1/models answered 404", "no OpenAI-compatible serve found"}, false},
		{"a LAN address is refused", "", false, []string{"--ports", "192.0.2.10:8000"}, 2, []string{"not on this host's loopback"}, false},
		{"the wildcard address is refused", "", false, []string{"--ports", "8000,0.0.0.0:30000"}, 2, []string{"not on this host's loopback"}, false},
		{"a host name is refused, not resolved", "", false, []string{"--ports", "example.com:8000"}, 2, []string{"not on this host's loopback"}, false},
		{"a port out of range is refused", "", false, []string{"--ports", "70000"}, 2, []string{"not a port"}, false},
		{"an existing router service is kept without --force", "", true, []string{"--ports", ports(serve.port)}, 2, []string{`already has a service "router"`, "--force"}, false},
		{"a missing compose file", "", false, []string{"--ports", ports(serve.port), "--compose", "/nonexistent/compose.yaml"}, 2, []string{"not an existing compose file"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "router.toml")
			if tc.existing != "" {
				if err := os.WriteFile(out, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"init", "--out", out}, tc.args...)
			composePath := filepath.Join(dir, "compose.yaml")
			if tc.compose {
				if err := os.WriteFile(composePath, repoCompose, 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--compose", composePath)
			}
			code, stdout := runBinary(t, nil, args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, stdout)
			}
			for _, want := range tc.wantOut {
				if !strings.Contains(stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, stdout)
				}
			}
			got, err := os.ReadFile(out)
			switch {
			case tc.wantOutput:
				if _, err := config.Load(out); err != nil {
					t.Errorf("written config: %v", err)
				}
			case tc.existing != "":
				if string(got) != tc.existing {
					t.Errorf("%s was changed: %q", out, got)
				}
			case err == nil:
				t.Errorf("%s was written:\n%s", out, got)
			}
			if tc.compose {
				if after, _ := os.ReadFile(composePath); !bytes.Equal(after, repoCompose) {
					t.Error("the compose file was changed")
				}
			}
		})
	}
}

// TestInitCompose: --compose adds a router service that passes the
// deployment invariants, keeps the rest of the file, and prints instead of
// writing when the file is not writable.
func TestInitCompose(t *testing.T) {
	// The models the repository's compose.yaml serves.
	vllm := startInitServe(t, "qwen3-8b", 32768, "")
	sglang := startInitServe(t, "qwen3-4b", -1, "")
	repoCompose, err := os.ReadFile(filepath.Join(repoRoot(t), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hostServes := []byte(`# Serves on the host's network, listening on loopback.
services:
  qwen:
    image: vllm/vllm-openai:v0.11.0
    restart: unless-stopped
    network_mode: host
    command: ["--model", "qwen3-8b", "--host", "127.0.0.1", "--port", "` + strconv.Itoa(vllm.port) + `"]
`)

	t.Run("the repository's compose.yaml, router replaced with --force", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "compose.yaml")
		if err := os.WriteFile(path, repoCompose, 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout := runBinary(t, nil, "init", "--ports", ports(vllm.port, sglang.port), "--out", filepath.Join(t.TempDir(), "router.toml"), "--compose", path, "--force")
		if code != 0 || !strings.Contains(stdout, "router on the networks serves, egress") {
			t.Fatalf("init: exit %d\n%s", code, stdout)
		}
		c, raw := loadComposeFile(t, path)
		checkComposeInvariants(t, c, raw)

		// The router is init's: its config calls the serves by service name.
		cfg, err := config.Parse("router-toml", []byte(c.Configs[c.Services["router"].Configs[0].Source].Content))
		if err != nil {
			t.Fatal(err)
		}
		var urls []string
		for _, tier := range cfg.Router.Tiers {
			urls = append(urls, tier.Model+" "+tier.BaseURL)
		}
		if want := []string{"qwen3-8b http://vllm:8000/v1", "qwen3-4b http://sglang:30000/v1"}; !reflect.DeepEqual(urls, want) {
			t.Errorf("tiers %v, want %v", urls, want)
		}
		// Everything else is as it was, comments included.
		orig, _ := loadCompose(t)
		for _, name := range []string{"router-host", "vllm", "sglang"} {
			if !reflect.DeepEqual(orig.Services[name], c.Services[name]) {
				t.Errorf("service %s changed:\n%+v\n%+v", name, orig.Services[name], c.Services[name])
			}
		}
		if orig.Configs["router-host-toml"] != c.Configs["router-host-toml"] {
			t.Error("the router-host config changed")
		}
		for _, line := range strings.Split(string(repoCompose), "\n") {
			if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "#") && !bytes.Contains(raw, []byte(line+"\n")) {
				t.Errorf("comment lost: %q", line)
			}
		}
	})

	t.Run("serves on the host network: the router joins it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "compose.yaml")
		if err := os.WriteFile(path, hostServes, 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout := runBinary(t, nil, "init", "--ports", ports(vllm.port), "--out", filepath.Join(t.TempDir(), "router.toml"), "--compose", path)
		if code != 0 {
			t.Fatalf("init: exit %d\n%s", code, stdout)
		}
		c, raw := loadComposeFile(t, path)
		if !bytes.HasPrefix(raw, hostServes) {
			t.Errorf("the serves' part changed:\n%s", raw)
		}
		r := c.Services["router"]
		if r.NetworkMode != "host" || len(r.Ports) > 0 || r.Restart != "unless-stopped" {
			t.Errorf("router: network_mode %q ports %v restart %q", r.NetworkMode, r.Ports, r.Restart)
		}
		checkRouterService(t, "router", c)
	})

	t.Run("a compose file that is not writable is printed to, not written", func(t *testing.T) {
		// A directory every user can traverse: as root the binary runs as
		// nobody, for whom the file is read-only.
		dir, err := os.MkdirTemp("", "anvil-init")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "compose.yaml")
		if err := os.WriteFile(path, hostServes, 0o444); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "anvil-router")
		exe, err := os.ReadFile(binary)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), bin, "init", "--ports", ports(vllm.port), "--out", filepath.Join(dir, "router.toml"), "--compose", path)
		cmd.Dir = dir
		cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
		asNobody(t, cmd)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, hostServes) {
			t.Errorf("the file was changed:\n%s", after)
		}
		_, snippet, ok := strings.Cut(string(out), "is not writable")
		if !ok {
			t.Fatalf("no snippet printed:\n%s", out)
		}
		for _, want := range []string{"services:\n", "\n  router:\n", "image: anvil-router:", "network_mode: host", "configs:\n  router-toml:\n    content: |"} {
			if !strings.Contains(snippet, want) {
				t.Errorf("snippet lacks %q:\n%s", want, snippet)
			}
		}
	})
}

// TestInitNames: aliases are short, normalized and unique; ports are
// loopback only.
func TestInitNames(t *testing.T) {
	res := func(port int, ids ...string) probeResult {
		r := probeResult{target: probeTarget{"127.0.0.1", port}, healthOK: true}
		for _, id := range ids {
			r.models = append(r.models, servedModel{ID: id, OwnedBy: "vllm"})
		}
		return r
	}
	tests := []struct {
		name    string
		results []probeResult
		want    []string // alias=tier
	}{
		{"short name of an org/model id", []probeResult{res(8000, "Qwen/Qwen3-8B-AWQ")}, []string{"qwen3-8b-awq=vllm-8000-qwen3-8b-awq"}},
		{"odd characters become dashes", []probeResult{res(8000, " Meta Llama:3.1 ")}, []string{"meta-llama-3.1=vllm-8000-meta-llama-3.1"}},
		{"the same short name on two ports", []probeResult{res(8000, "a/m"), res(8001, "b/M")}, []string{"m=vllm-8000-m", "m-8001=vllm-8001-m"}},
		{"the same short name twice on one port", []probeResult{res(8000, "a/m", "b/m", "c/m")}, []string{"m=vllm-8000-m", "m-8000=vllm-8000-m-2", "m-8000-2=vllm-8000-m-3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, tier := range planTiers(tc.results) {
				got = append(got, tier.Alias+"="+tier.ID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if _, err := config.Parse("generated", renderConfig(planTiers(tc.results), "127.0.0.1:8080")); err != nil {
				t.Errorf("generated config: %v", err)
			}
		})
	}

	portTests := []struct {
		spec    string
		want    string // addresses, or "error"
		problem string
	}{
		{"", "127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8002 127.0.0.1:8003 127.0.0.1:30000 127.0.0.1:30001 127.0.0.1:30002 127.0.0.1:30003", ""},
		{"8000, 8000,localhost:9000,[::1]:9001,127.0.0.2:9002", "127.0.0.1:8000 127.0.0.1:9000 [::1]:9001 127.0.0.2:9002", ""},
		{"[::]:8000", "error", "not on this host's loopback"},
		{"10.0.0.1:8000", "error", "not on this host's loopback"},
		{"http://127.0.0.1:8000", "error", "neither a port nor host:port"},
		{"0", "error", "not a port"},
	}
	for _, tc := range portTests {
		t.Run("ports "+tc.spec, func(t *testing.T) {
			ts, err := parseInitPorts(tc.spec)
			if tc.want == "error" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Errorf("err %v, want %q", err, tc.problem)
				}
				return
			}
			var got []string
			for _, pt := range ts {
				got = append(got, pt.addr())
			}
			if err != nil || strings.Join(got, " ") != tc.want {
				t.Errorf("got %v %v, want %s", got, err, tc.want)
			}
		})
	}
}
