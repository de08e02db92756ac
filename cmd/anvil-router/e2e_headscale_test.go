package main

// A real tailnet on loopback (issue 7): pinned headscale as the control
// server, the real anvil-router binary as a tagged node, and real
// tailscaled clients in userspace-networking mode reaching it through
// their SOCKS5 proxies. Opt-in, because the first run builds headscale and
// tailscaled (minutes); later runs reuse the cached binaries:
//
//	ANVIL_E2E=1 go test -run TestE2EHeadscale -v -timeout 30m ./cmd/anvil-router
//
// Every process here sends traffic to 127.0.0.1 only (a test must never
// reach a public control plane, DERP or ACME server): headscale has no DERP map URLs,
// no update check, no DNS nameservers, and its embedded DERP and STUN
// listen on 127.0.0.1; clients and the router run with loopbackOnlyEnv.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// The pinned versions of the tools the test builds.
const (
	headscaleVersion = "v0.29.2"
	tailscaleVersion = "v1.102.5" // the same as go.mod's tailscale.com
)

// e2eCapability is the router's app capability ([tailnet].capability's
// default).
const e2eCapability = "anvil-serving.dev/cap/router"

// readmePolicy is the tailnet policy of the README's Deployment section,
// verbatim: tags owned by group:ops; tag:mini may reach the router on
// 80/443 and use the llm.* models; group:ops may use every model and the
// admin API.
const readmePolicy = `{
  "groups": {"group:ops": ["ops@"]},
  "tagOwners": {"tag:anvil": ["group:ops"], "tag:mini": ["group:ops"]},
  "grants": [
    {"src": ["tag:mini"], "dst": ["tag:anvil"], "ip": ["tcp:80", "tcp:443"]},
    {"src": ["tag:mini"], "dst": ["tag:anvil"],
     "app": {"anvil-serving.dev/cap/router": [{"models": ["llm.*"], "rpm": 60}]}},
    {"src": ["group:ops"], "dst": ["tag:anvil"], "ip": ["tcp:80", "tcp:443"],
     "app": {"anvil-serving.dev/cap/router": [{"models": ["*"], "admin": true}]}}
  ],
  "nodeAttrs": [{"target": ["*"], "attr": ["disable-captive-portal-detection"]}]
}`

// e2ePolicy is readmePolicy plus two test-only tags that the ACL lets
// reach the router: tag:nogrant has no grant, tag:other has every model
// but is not in the router's allow_tags.
func e2ePolicy(t *testing.T) string {
	t.Helper()
	p := readmePolicy
	for _, edit := range [][2]string{
		{`"tag:mini": ["group:ops"]}`, `"tag:mini": ["group:ops"], "tag:nogrant": ["group:ops"], "tag:other": ["group:ops"]}`},
		{`  ],
  "nodeAttrs"`, `    ,{"src": ["tag:nogrant", "tag:other"], "dst": ["tag:anvil"], "ip": ["tcp:80", "tcp:443"]},
    {"src": ["tag:other"], "dst": ["tag:anvil"],
     "app": {"anvil-serving.dev/cap/router": [{"models": ["*"], "admin": true}]}}
  ],
  "nodeAttrs"`},
	} {
		if !strings.Contains(p, edit[0]) {
			t.Fatalf("readmePolicy changed shape: no %q", edit[0])
		}
		p = strings.Replace(p, edit[0], edit[1], 1)
	}
	return p
}

// headscaleConfig reaches nothing but 127.0.0.1: no DERP map URLs, no
// update check, no upstream nameservers, embedded DERP and STUN on
// loopback, sqlite in dir.
func headscaleConfig(dir string, port, grpcPort, metricsPort, stunPort int) string {
	return fmt.Sprintf(`server_url: http://127.0.0.1:%[2]d
listen_addr: 127.0.0.1:%[2]d
metrics_listen_addr: 127.0.0.1:%[4]d
grpc_listen_addr: 127.0.0.1:%[3]d
grpc_allow_insecure: false
disable_check_updates: true
noise:
  private_key_path: %[1]s/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: loop
    region_name: loopback
    verify_clients: true
    stun_listen_addr: 127.0.0.1:%[5]d
    private_key_path: %[1]s/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
    ipv6: none
  urls: []
  paths: []
  auto_update_enabled: false
database:
  type: sqlite
  sqlite:
    path: %[1]s/db.sqlite
    write_ahead_log: true
log:
  level: info
  format: text
policy:
  mode: file
  path: %[1]s/policy.hujson
dns:
  magic_dns: true
  base_domain: anvil-e2e.test
  override_local_dns: false
  nameservers:
    global: []
    split: {}
  search_domains: []
  extra_records: []
unix_socket: %[1]s/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
taildrop:
  enabled: false
`, dir, port, grpcPort, metricsPort, stunPort)
}

// e2eEnv is the environment of every tailnet process: loopback only, and
// DERP over plain http (headscale's server_url is http://).
func e2eEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	env = append(env, loopbackOnlyEnv...)
	env = append(env, "TS_DEBUG_USE_DERP_HTTP=1")
	return append(env, extra...)
}

// TestE2EHeadscale: the router joins a real control server with a tagged
// pre-auth key and serves real Tailscale clients by their identity.
func TestE2EHeadscale(t *testing.T) {
	if os.Getenv("ANVIL_E2E") != "1" {
		t.Skip("set ANVIL_E2E=1 to build headscale and tailscaled and run a real tailnet on loopback")
	}
	if os.Geteuid() != 0 {
		// Without CAP_NET_ADMIN, tailscale binds the router's UDP socket to
		// the default route's interface, and packets meant for 127.0.0.1
		// would leave through it (see e2eRouter.start).
		t.Skip("needs root: the router runs as nobody with CAP_NET_ADMIN to keep its packets on loopback")
	}
	t0 := time.Now()
	tools := e2eTools(t)
	t.Logf("tools ready in %v", time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()

	hs := startHeadscale(t, tools["headscale"])
	hs.cli(t, "users", "create", "ops")
	key := func(tag string) string { return hs.preAuthKey(t, tag) }

	// A fake serve that paces its deltas, so streaming is observable.
	const deltas, pace = 8, 40 * time.Millisecond
	_, serveURL, stopServe, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{
		Model: "served-model", Pace: pace, Deltas: strings.Split(strings.Repeat("tok|", deltas), "|")[:deltas],
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopServe)

	const token = "e2e-router-token-0123456789"
	rt := newE2ERouter(t, hs.url, serveURL)
	t.Run("headscale refuses advertised tags with a tagged pre-auth key", func(t *testing.T) {
		// The README's warning: the key's tags are the node's tags.
		stateDir := rt.stateDir
		defer func() { rt.stateDir = stateDir }()
		rt.stateDir = rt.newStateDir(t, "refused")
		out := rt.start(t, "TS_AUTHKEY="+key("tag:anvil"), "TS_ADVERTISE_TAGS=tag:anvil")
		line := waitRouter(t, out, regexp.MustCompile(`"msg":"tailnet node up"`), 60*time.Second, true)
		if !strings.Contains(line, "requested tags [tag:anvil] are invalid or not permitted") {
			t.Errorf("want headscale's refusal, got: %s", line)
		}
		rt.cmd.Wait()
	})

	routerKey := key("tag:anvil")
	t2 := time.Now()
	out := rt.start(t, "TS_AUTHKEY="+routerKey)
	up := waitRouter(t, out, regexp.MustCompile(`"msg":"tailnet node up"`), 90*time.Second, false)
	waitRouter(t, out, regexp.MustCompile(`anvil-router ready`), 30*time.Second, false)
	t.Logf("router enrolled in %v: %s", time.Since(t2).Round(time.Millisecond), up)
	t.Run("the router runs as nobody", func(t *testing.T) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", rt.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+65534\s+65534\s+65534\s+65534$`).Match(status) {
			t.Errorf("router process is not nobody:\n%s", status)
		}
	})
	t.Run("the router holds no TCP listener off loopback", func(t *testing.T) {
		// The bind sandbox keeps tailscale's peerAPI kernel listener (and
		// anything else) off the host's interfaces.
		if !strings.Contains(out.all(), `"msg":"sandbox: TCP bind restricted`) {
			t.Skip("bind sandbox not enforced on this kernel")
		}
		ls := tcpListeners(t, rt.cmd.Process.Pid)
		if off := offLoopback(ls); len(off) != 0 || len(ls) == 0 {
			t.Errorf("router TCP listeners %v; off loopback: %v", ls, off)
		}
		if ss, err := exec.Command("ss", "-ltnpH").Output(); err == nil {
			pid := fmt.Sprintf("pid=%d,", rt.cmd.Process.Pid)
			for _, line := range strings.Split(string(ss), "\n") {
				if f := strings.Fields(line); strings.Contains(line, pid) && len(f) >= 4 && !isLoopbackAddrPort(f[3]) {
					t.Errorf("ss -ltnp shows a router listener off loopback: %s", line)
				}
			}
		}
	})
	t.Run("the router is a tagged node", func(t *testing.T) {
		var nodes []struct {
			Name      string   `json:"name"`
			GivenName string   `json:"given_name"`
			Tags      []string `json:"tags"`
		}
		out := hs.cli(t, "nodes", "list", "--output", "json")
		if err := json.Unmarshal(out, &nodes); err != nil {
			t.Fatalf("nodes list: %v %s", err, out)
		}
		if len(nodes) != 1 || nodes[0].GivenName != "anvil" || !slices.Equal(nodes[0].Tags, []string{"tag:anvil"}) {
			t.Errorf("nodes: %s", out)
		}
	})

	// Three clients, each a real tailscaled in userspace-networking mode.
	clients := map[string]*e2eClient{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, tag := range map[string]string{"mini": "tag:mini", "nogrant": "tag:nogrant", "other": "tag:other"} {
		k := key(tag)
		wg.Go(func() {
			c := startTailscaled(t, tools["tailscaled"], tools["tailscale"], name, hs.url, k)
			mu.Lock()
			clients[name] = c
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(clients) != 3 || slices.Contains(slices.Collect(maps.Values(clients)), nil) {
		t.FailNow()
	}
	for _, c := range clients {
		c.waitReachable(t, "http://anvil/healthz", 90*time.Second)
	}
	t.Logf("tailnet up (control, router, 3 clients) in %v", time.Since(t1).Round(time.Millisecond))

	mini := clients["mini"]
	t.Run("streamed completion through the client node", func(t *testing.T) {
		status, events, spread := mini.streamChat(t, token, "llm.primary")
		if status != 200 {
			t.Fatalf("status %d", status)
		}
		if len(events) < deltas+1 || events[len(events)-1] != "[DONE]" || !strings.Contains(events[0], `"model":"llm.primary"`) {
			t.Fatalf("events %q", events)
		}
		t.Logf("%d events over %v", len(events), spread.Round(time.Millisecond))
		// Event by event: the first arrived well before the last.
		if spread < time.Duration(deltas-2)*pace {
			t.Errorf("events arrived within %v, want them spread over ~%v (relayed as they came)", spread, time.Duration(deltas)*pace)
		}
		line := out.waitFor(t, regexp.MustCompile(`"msg":"request".*"node":"mini"`), 5*time.Second)
		t.Logf("audit: %s", line)
		for _, want := range []string{`"user":"tagged-devices"`, `"tags":"tag:mini"`, `"status":200`, `"alias":"llm.primary"`} {
			if !strings.Contains(line, want) {
				t.Errorf("audit line lacks %s: %s", want, line)
			}
		}
	})
	t.Run("models are filtered by the grant", func(t *testing.T) {
		status, body := mini.do(t, "GET", "http://anvil/v1/models", token, "")
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		json.Unmarshal([]byte(body), &list)
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		if status != 200 || !slices.Equal(ids, []string{"llm.primary", "llm.fast"}) {
			t.Errorf("/v1/models: %d %v, want 200 [llm.primary llm.fast] (chat is outside llm.*)\n%s", status, ids, body)
		}
	})

	denials := []struct {
		name, client, model, want string
	}{
		{"a model outside the grant", "mini", "chat", `is not permitted for this caller`},
		{"an allowed tag without a grant", "nogrant", "llm.primary", `not permitted to use the router`},
		{"a tag outside allow_tags, even with a grant", "other", "llm.primary", `not permitted to use the router`},
	}
	for _, tc := range denials {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			status, body := clients[tc.client].do(t, "POST", "http://anvil/v1/chat/completions", token, `{"model":"`+tc.model+`","stream":true}`)
			if status != 403 || !strings.Contains(body, `"permission_error"`) || !strings.Contains(body, tc.want) {
				t.Errorf("%d %s, want 403 permission_error %q", status, body, tc.want)
			}
		})
	}
	t.Run("the README's curl through the client's SOCKS5 proxy", func(t *testing.T) {
		if _, err := exec.LookPath("curl"); err != nil {
			t.Skip("no curl")
		}
		cmd := exec.CommandContext(t.Context(), "curl", "-sS", "--max-time", "20", "--socks5-hostname", mini.socks,
			"http://anvil/v1/models", "-H", "Authorization: Bearer "+token)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy settings of the environment
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), `"id":"llm.primary"`) {
			t.Errorf("curl: %v %s", err, out)
		}
	})
	t.Run("the router token is still required on top", func(t *testing.T) {
		if status, body := mini.do(t, "GET", "http://anvil/v1/models", "", ""); status != 401 {
			t.Errorf("no token: %d %s, want 401", status, body)
		}
	})

	t.Run("restart from the state dir without a key", func(t *testing.T) {
		rt.stop(t)
		t2 := time.Now()
		out2 := rt.start(t) // no TS_AUTHKEY
		up2 := waitRouter(t, out2, regexp.MustCompile(`"msg":"tailnet node up"`), 60*time.Second, false)
		waitRouter(t, out2, regexp.MustCompile(`anvil-router ready`), 30*time.Second, false)
		ips := regexp.MustCompile(`"ips":"([^"]+)"`)
		if a, b := ips.FindStringSubmatch(up), ips.FindStringSubmatch(up2); a == nil || b == nil || a[1] != b[1] {
			t.Errorf("restarted as another node:\n%s\n%s", up, up2)
		}
		mini.waitReachable(t, "http://anvil/healthz", 60*time.Second)
		if status, events, _ := mini.streamChat(t, token, "llm.primary"); status != 200 || len(events) == 0 || events[len(events)-1] != "[DONE]" {
			t.Errorf("after restart: %d %q", status, events)
		}
		t.Logf("restart from state to first served request: %v", time.Since(t2).Round(time.Millisecond))
		if strings.Contains(out2.all(), "login required") {
			t.Error("restart asked for a login")
		}
		for _, o := range []*lineWaiter{out, out2} {
			if strings.Contains(o.all(), routerKey) || strings.Contains(o.all(), token) {
				t.Error("a secret is in the router's log")
			}
		}
		rt.stop(t)
	})

	t.Run("a backup of the state dir restores the node", func(t *testing.T) {
		// The README's commands, with the router stopped.
		backup := filepath.Join(t.TempDir(), "anvil-state.tgz")
		restored := rt.newStateDir(t, "restored")
		for _, args := range [][]string{
			{"tar", "-C", rt.stateDir, "-czf", backup, "."},
			{"tar", "-C", restored, "-xzf", backup},
		} {
			if out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		rt.stateDir = restored
		out3 := rt.start(t) // no TS_AUTHKEY
		up3 := waitRouter(t, out3, regexp.MustCompile(`"msg":"tailnet node up"`), 60*time.Second, false)
		ips := regexp.MustCompile(`"ips":"([^"]+)"`)
		if a, b := ips.FindStringSubmatch(up), ips.FindStringSubmatch(up3); a == nil || b == nil || a[1] != b[1] {
			t.Errorf("restored state came up as another node:\n%s\n%s", up, up3)
		}
		mini.waitReachable(t, "http://anvil/healthz", 60*time.Second)
		if status, _ := mini.do(t, "GET", "http://anvil/v1/models", token, ""); status != 200 {
			t.Errorf("restored router: /v1/models %d", status)
		}
		rt.stop(t)
	})
	t.Logf("e2e wall time: %v (tools %v, tailnet and checks %v)", time.Since(t0).Round(time.Millisecond),
		t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
}

// --- tools -----------------------------------------------------------------

// e2eTools returns the paths of headscale, tailscale and tailscaled at the
// pinned versions, building them on first use into a cache directory
// ($ANVIL_E2E_CACHE, else the user cache dir's anvil-e2e) keyed by version,
// Go version and platform.
func e2eTools(t *testing.T) map[string]string {
	t.Helper()
	root := os.Getenv("ANVIL_E2E_CACHE")
	if root == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache dir (set ANVIL_E2E_CACHE): %v", err)
		}
		root = filepath.Join(dir, "anvil-e2e")
	}
	tools := map[string]string{}
	for _, tool := range []struct {
		name, version string
		pkgs          []string
	}{
		{"headscale", headscaleVersion, []string{"github.com/juanfont/headscale/cmd/headscale"}},
		{"tailscale", tailscaleVersion, []string{"tailscale.com/cmd/tailscale", "tailscale.com/cmd/tailscaled"}},
	} {
		dir := filepath.Join(root, fmt.Sprintf("%s-%s-%s-%s-%s", tool.name, tool.version, runtime.Version(), runtime.GOOS, runtime.GOARCH))
		if _, err := os.Stat(filepath.Join(dir, path.Base(tool.pkgs[len(tool.pkgs)-1]))); err != nil {
			start := time.Now()
			buildTools(t, root, dir, tool.version, tool.pkgs)
			t.Logf("built %s %s in %v (cached in %s)", tool.name, tool.version, time.Since(start).Round(time.Second), dir)
		} else {
			t.Logf("reusing %s %s from %s", tool.name, tool.version, dir)
		}
		for _, p := range tool.pkgs {
			tools[path.Base(p)] = filepath.Join(dir, path.Base(p))
		}
	}
	return tools
}

// buildTools builds pkgs at version in a throwaway module, then moves the
// binaries into dir in one rename, so a half-built cache never exists.
func buildTools(t *testing.T, root, dir, version string, pkgs []string) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mod, err := os.MkdirTemp(root, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(mod)
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module anvil-e2e-tools\n\ngo "+goVersion+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0")
	run := func(args ...string) {
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir, cmd.Env = mod, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var get []string
	for _, p := range pkgs {
		get = append(get, p+"@"+version) // exact versions: the proxy may refuse @latest
	}
	run(append([]string{"get"}, get...)...)
	bin := filepath.Join(mod, "bin")
	run(append([]string{"build", "-trimpath", "-o", bin + "/"}, pkgs...)...)
	if err := os.Rename(bin, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(dir); statErr != nil { // not a concurrent run's result
			t.Fatal(err)
		}
	}
}

// --- processes -------------------------------------------------------------

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(freePort(t))
	var n int
	fmt.Sscan(p, &n)
	return n
}

// startProc starts a helper process whose output goes to a log file that
// is printed if the test fails; it is stopped with SIGTERM at cleanup.
func startProc(t *testing.T, name string, cmd *exec.Cmd) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() || os.Getenv("ANVIL_E2E_LOGS") != "" {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 && os.Getenv("ANVIL_E2E_LOGS") == "" {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
}

type headscale struct {
	bin, config, url string
}

func startHeadscale(t *testing.T, bin string) *headscale {
	t.Helper()
	dir := t.TempDir()
	port := freeTCPPort(t)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(headscaleConfig(dir, port, freeTCPPort(t), freeTCPPort(t), freeUDPPort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.hujson"), []byte(e2ePolicy(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &headscale{bin: bin, config: cfg, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Env = e2eEnv("HOME=" + dir)
	startProc(t, "headscale", cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(h.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("headscale not healthy at %s: %v", h.url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cli runs the headscale CLI against the running server (unix socket).
func (h *headscale) cli(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), h.bin, append([]string{"--config", h.config}, args...)...)
	cmd.Env = e2eEnv("HOME=" + filepath.Dir(h.config))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("headscale %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// preAuthKey creates a single-use pre-auth key that tags its node.
func (h *headscale) preAuthKey(t *testing.T, tag string) string {
	t.Helper()
	out := h.cli(t, "preauthkeys", "create", "--tags", tag, "--expiration", "1h", "--output", "json")
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &k); err != nil || k.Key == "" {
		t.Fatalf("preauthkeys create: %v %s", err, out)
	}
	return k.Key
}

// capNetAdmin is CAP_NET_ADMIN (linux/capability.h).
const capNetAdmin = 12

// e2eRouter is the real anvil-router binary as the tailnet node "anvil",
// run as nobody, as the container runs it.
type e2eRouter struct {
	bin, config, stateDir, controlURL string
	cmd                               *exec.Cmd
}

func newE2ERouter(t *testing.T, controlURL, serveURL string) *e2eRouter {
	t.Helper()
	// Directories nobody can traverse; only the state dir is writable.
	dir, err := os.MkdirTemp("", "anvil-e2e-router")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	r := &e2eRouter{bin: filepath.Join(dir, "anvil-router"), config: filepath.Join(dir, "router.toml"), controlURL: controlURL}
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `[server]
auth_env = "ANVIL_E2E_ROUTER_TOKEN"
local_listen = "` + freePort(t) + `"

[tailnet]
hostname = "anvil"
require_grant = true
allow_tags = ["tag:mini", "tag:nogrant"]

[[router.tiers]]
id = "local-a"
base_url = "` + serveURL + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "ANVIL_E2E_SERVE_KEY"
model = "served-model"

[router.model_routes]
llm.primary = "local-a"
llm.fast = "local-a"
chat = "local-a"
`
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.stateDir = r.newStateDir(t, "state")
	return r
}

// newStateDir makes an empty state dir that the router's user owns.
func (r *e2eRouter) newStateDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(r.bin), name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (r *e2eRouter) start(t *testing.T, env ...string) *lineWaiter {
	t.Helper()
	cmd := exec.Command(r.bin, "serve", "--config", r.config, "--log-format", "json", "--drain-timeout", "2s")
	cmd.Dir = "/"
	cmd.Env = e2eEnv(append([]string{
		"HOME=/nonexistent",
		"TS_CONTROL_URL=" + r.controlURL,
		"TS_STATE_DIR=" + r.stateDir,
		"ANVIL_E2E_ROUTER_TOKEN=e2e-router-token-0123456789",
	}, env...)...)
	if os.Geteuid() == 0 {
		// nobody, with one capability: CAP_NET_ADMIN lets tailscale mark
		// its sockets (SO_MARK) instead of binding them to the default
		// route's interface, which would send packets meant for 127.0.0.1
		// out of the host's interface. File access stays nobody's.
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true},
			AmbientCaps: []uintptr{capNetAdmin},
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.cmd = cmd
	w := newLineWaiter(stderr)
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() || os.Getenv("ANVIL_E2E_LOGS") != "" {
			t.Logf("--- router log ---\n%s", w.all())
		}
	})
	return w
}

// waitRouter returns the router's first log line matching re, or its
// fatal error line ("anvil-router: ...") if it exits first: that fails the
// test unless wantFatal.
func waitRouter(t *testing.T, w *lineWaiter, re *regexp.Regexp, timeout time.Duration, wantFatal bool) string {
	t.Helper()
	fatal := regexp.MustCompile(`^anvil-router: `)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		lines := slices.Clone(w.lines)
		w.mu.Unlock()
		for _, l := range lines {
			switch {
			case fatal.MatchString(l) && wantFatal:
				return l
			case fatal.MatchString(l):
				t.Fatalf("router exited: %s", l)
			case re.MatchString(l) && !wantFatal:
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no router line matching %s within %v:\n%s", re, timeout, w.all())
	return ""
}

// stop sends SIGTERM and expects a clean exit.
func (r *e2eRouter) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	if err := r.cmd.Wait(); err != nil {
		t.Errorf("router exit after SIGTERM: %v", err)
	}
}

// e2eClient is a tailscaled in userspace-networking mode with a SOCKS5
// proxy on 127.0.0.1: the way a container or unprivileged client reaches
// http://anvil/v1.
type e2eClient struct {
	name  string
	socks string // the SOCKS5 proxy's address
	http  *http.Client
}

func startTailscaled(t *testing.T, tailscaled, tailscale, name, controlURL, authKey string) *e2eClient {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "tailscaled.sock")
	socks := freePort(t)
	cmd := exec.Command(tailscaled,
		"--tun=userspace-networking",
		"--statedir="+filepath.Join(dir, "state"),
		"--socket="+sock,
		"--port=0",
		"--socks5-server="+socks,
		"--no-logs-no-support",
	)
	cmd.Env = e2eEnv("HOME=" + dir)
	startProc(t, "tailscaled-"+name, cmd)

	// Wait for the daemon's socket, then join with the tagged key.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("tailscaled %s: no socket", name)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	up := exec.CommandContext(ctx, tailscale, "--socket="+sock, "up",
		"--login-server="+controlURL, "--authkey="+authKey, "--hostname="+name,
		"--accept-dns=false", "--timeout=80s")
	up.Env = e2eEnv("HOME=" + dir)
	if out, err := up.CombinedOutput(); err != nil {
		t.Errorf("tailscale up (%s): %v\n%s", name, err, out)
		return nil
	}
	proxy := &url.URL{Scheme: "socks5", Host: socks}
	return &e2eClient{name: name, socks: socks, http: &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}}
}

// waitReachable polls u through the client's proxy until it answers 200
// (the first packets wait for peers and DERP to settle).
func (c *e2eClient) waitReachable(t *testing.T, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := c.http.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode == 200 {
				return
			}
			last = resp.Status
		} else {
			cancel()
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %s not reachable within %v: %s", c.name, u, timeout, last)
}

func (c *e2eClient) do(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, u, c.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// streamChat sends a streamed chat completion and returns the SSE data
// payloads and the time between the first and the last one.
func (c *e2eClient) streamChat(t *testing.T, token, model string) (status int, events []string, spread time.Duration) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://anvil/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"Hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("chat via %s: %v", c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Logf("chat via %s: %d %s", c.name, resp.StatusCode, b)
		return resp.StatusCode, nil, 0
	}
	var first time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if first.IsZero() {
				first = time.Now()
			}
			events = append(events, data)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading the stream: %v", err)
	}
	return resp.StatusCode, events, time.Since(first)
}

// TestREADMEPolicy: the policy the README shows is the one the headscale
// end-to-end test loads.
func TestREADMEPolicy(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), readmePolicy) {
		t.Errorf("README.md does not show the e2e test's policy verbatim:\n%s", readmePolicy)
	}
}
