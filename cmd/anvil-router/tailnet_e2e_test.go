package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"tailscale.com/envknob"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

// loopbackOnlyEnv keeps a real router binary's tailnet traffic on this
// machine: no log upload, no gateway probes, no host addresses advertised,
// never the public control plane or ACME: tests touch nothing off this host.
var loopbackOnlyEnv = []string{
	"TS_DISABLE_PORTMAPPER=1",
	"TS_DEBUG_OMIT_LOCAL_ADDRS=1",
	"TS_NO_LOGS_NO_SUPPORT=1",
	"TS_PANIC_IF_HIT_MAIN_CONTROL=1",
	"TS_DEBUG_ACME_DIRECTORY_URL=http://127.0.0.1:9/directory",
}

func quietTailnetInProcess() {
	for _, kv := range loopbackOnlyEnv {
		k, v, _ := strings.Cut(kv, "=")
		envknob.Setenv(k, v)
	}
	netns.SetEnabled(false)
}

// lineWaiter collects a process's output and waits for a line.
type lineWaiter struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
}

func newLineWaiter(r io.Reader) *lineWaiter {
	w := &lineWaiter{}
	w.cond = sync.NewCond(&w.mu)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.cond.Broadcast()
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *lineWaiter) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// waitFor returns the first line matching re, or fails after timeout.
func (w *lineWaiter) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, l := range w.lines {
			if re.MatchString(l) {
				w.mu.Unlock()
				return l
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no line matching %s within %v:\n%s", re, timeout, w.all())
	return ""
}

// TestServeJoinsTailnet runs the real binary against an in-process control
// server: it joins as "anvil", serves a client node's streamed completion
// by MagicDNS name, answers the loopback health check, drains on SIGTERM,
// and comes back from its state dir as the same node.
func TestServeJoinsTailnet(t *testing.T) {
	quietTailnetInProcess()
	derpMap := integration.RunDERPAndSTUN(t, logger.Discard, "127.0.0.1")
	control := &testcontrol.Server{DERPMap: derpMap, DNSConfig: &tailcfg.DNSConfig{Proxied: true}, MagicDNSDomain: "tail-scale.ts.net", Logf: logger.Discard}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	defer control.HTTPTestServer.Close()

	_, serveURL, stopServe, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopServe()
	local := freePort(t)
	cfg := writeConfig(t, "[server]\nlocal_listen = \""+local+"\"\n\n[tailnet]\nhostname = \"anvil\"\n"+tierConfig(serveURL)[len("\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"):])
	stateDir := filepath.Join(t.TempDir(), "ts-state")

	start := func() (*exec.Cmd, *lineWaiter) {
		cmd := exec.Command(binary, "serve", "--config", cfg, "--log-format", "json", "--drain-timeout", "5s")
		cmd.Env = append(os.Environ(), loopbackOnlyEnv...)
		cmd.Env = append(cmd.Env, "TS_CONTROL_URL="+control.HTTPTestServer.URL, "TS_STATE_DIR="+stateDir, "ANVIL_SERVING_HOME="+t.TempDir())
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, newLineWaiter(stderr)
	}
	ipsRE := regexp.MustCompile(`"msg":"tailnet node up".*"ips":"([^"]+)"`)

	t0 := time.Now()
	cmd, out := start()
	out.waitFor(t, regexp.MustCompile(`anvil-router ready`), 60*time.Second)
	t.Logf("first start (enrolment) to ready: %v", time.Since(t0))
	firstIPs := ipsRE.FindStringSubmatch(out.waitFor(t, ipsRE, time.Second))[1]

	// The container health check.
	hc := exec.Command(binary, "healthcheck", "--addr", local)
	if b, err := hc.CombinedOutput(); err != nil {
		t.Errorf("healthcheck: %v %s", err, b)
	}

	client := &tsnet.Server{Dir: t.TempDir(), ControlURL: control.HTTPTestServer.URL, Hostname: "mini", Store: new(mem.Store), Ephemeral: true, Logf: logger.Discard, UserLogf: logger.Discard}
	defer client.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := client.Up(ctx); err != nil {
		t.Fatal(err)
	}
	hcl := client.HTTPClient()
	chat := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://anvil/v1/chat/completions", strings.NewReader(`{"model":"chat","stream":true}`))
		resp, err := hcl.Do(req)
		if err != nil {
			t.Fatalf("chat over the tailnet: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
			t.Fatalf("chat over the tailnet: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	chat()
	out.waitFor(t, regexp.MustCompile(`"msg":"request".*"node":"mini"`), 5*time.Second)

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.all())
	}

	// Restart from the state dir: no enrolment, same node.
	t1 := time.Now()
	cmd, out = start()
	out.waitFor(t, regexp.MustCompile(`anvil-router ready`), 60*time.Second)
	t.Logf("restart from state to ready: %v", time.Since(t1))
	if ips := ipsRE.FindStringSubmatch(out.waitFor(t, ipsRE, time.Second))[1]; ips != firstIPs {
		t.Errorf("restarted node has IPs %s, want the enrolled node's %s", ips, firstIPs)
	}
	chat()
	t.Logf("restart to first served request: %v", time.Since(t1))
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}
