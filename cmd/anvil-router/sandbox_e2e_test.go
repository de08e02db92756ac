package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter/sandbox"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

// TestServeHoldsNoListenerOffLoopback runs the real binary on an
// in-process tailnet and reads the kernel's socket table for it: with the
// bind sandbox (the default) its only TCP listener is the configured
// loopback one, while a peer still reaches it over the tailnet and
// tailscale's peerAPI still answers (inside netstack). With --sandbox=off
// tailscale's peerAPI kernel listener on 0.0.0.0 shows up, which is what
// the sandbox is there to prevent.
func TestServeHoldsNoListenerOffLoopback(t *testing.T) {
	if !sandbox.Supported() {
		t.Skip("this kernel cannot restrict TCP bind (Landlock ABI < 4)")
	}
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

	client := &tsnet.Server{Dir: t.TempDir(), ControlURL: control.HTTPTestServer.URL, Hostname: "mini", Store: new(mem.Store), Ephemeral: true, Logf: logger.Discard, UserLogf: logger.Discard}
	defer client.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if _, err := client.Up(ctx); err != nil {
		t.Fatal(err)
	}
	ipRE := regexp.MustCompile(`"msg":"tailnet node up".*"ips":"([^",]+)`)

	for _, tc := range []struct {
		name         string
		mode         string
		wantOffLoop  bool
		wantLogMatch string
	}{
		{"sandbox on by default", "", false, `"msg":"sandbox: TCP bind restricted`},
		{"sandbox off", "off", true, `"msg":"sandbox off`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := freePort(t)
			cfg := writeConfig(t, "[server]\nlocal_listen = \""+local+"\"\n\n[tailnet]\nhostname = \"anvil\"\n"+tierConfig(serveURL)[len("\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"):])
			args := []string{"serve", "--config", cfg, "--log-format", "json", "--log-level", "debug"}
			if tc.mode != "" {
				args = append(args, "--sandbox", tc.mode)
			}
			cmd := exec.Command(binary, args...)
			cmd.Env = append(os.Environ(), loopbackOnlyEnv...)
			cmd.Env = append(cmd.Env, "TS_CONTROL_URL="+control.HTTPTestServer.URL, "TS_STATE_DIR="+filepath.Join(t.TempDir(), "ts"), "ANVIL_SERVING_HOME="+t.TempDir(), "TS_HOSTNAME=anvil-"+map[string]string{"": "on", "off": "off"}[tc.mode])
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			out := newLineWaiter(stderr)
			out.waitFor(t, regexp.MustCompile(tc.wantLogMatch), 30*time.Second)
			out.waitFor(t, regexp.MustCompile(`anvil-router ready`), 60*time.Second)
			ip := netip.MustParseAddr(ipRE.FindStringSubmatch(out.waitFor(t, ipRE, time.Second))[1])

			// A peer reaches it over the tailnet, and tailscale's peerAPI
			// (which tsnet serves inside netstack) answers.
			hcl := client.HTTPClient()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+ip.String()+"/v1/chat/completions", strings.NewReader(`{"model":"chat","stream":true}`))
			resp, err := hcl.Do(req)
			if err != nil {
				t.Fatalf("chat over the tailnet: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
				t.Fatalf("chat over the tailnet: %d %s", resp.StatusCode, b)
			}
			lc, err := client.LocalClient()
			if err != nil {
				t.Fatal(err)
			}
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			pr, err := lc.Ping(pctx, ip, tailcfg.PingPeerAPI)
			pcancel()
			if err != nil || pr.Err != "" || pr.PeerAPIURL == "" {
				t.Errorf("peerAPI ping: %+v, %v", pr, err)
			}

			// The kernel's view of the process's listeners, once the node
			// is up (peerAPI listens as soon as the node has its address).
			ls := tcpListeners(t, cmd.Process.Pid)
			t.Logf("TCP listeners of the router: %v", ls)
			off := offLoopback(ls)
			if tc.wantOffLoop {
				if len(off) == 0 {
					t.Errorf("--sandbox=off: no listener off loopback; the check cannot see tailscale's peerAPI socket (listeners %v)", ls)
				}
				return
			}
			if len(off) != 0 {
				t.Errorf("listeners off loopback: %v (all: %v)", off, ls)
			}
			if want := netip.MustParseAddrPort(local); len(ls) != 1 || ls[0] != want {
				t.Errorf("listeners = %v, want only %v", ls, want)
			}
			if !strings.Contains(out.all(), "harmless (netstack available)") {
				t.Errorf("tailscale did not report falling back to its netstack peerAPI listener")
			}
		})
	}
}
