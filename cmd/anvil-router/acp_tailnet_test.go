package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/logger"
)

// acpPeer drives `anvil-router acp` over its stdio with raw JSON-RPC.
type acpPeer struct {
	t      *testing.T
	in     io.WriteCloser
	out    *bufio.Scanner
	nextID int
}

// request sends a request and returns its answer, skipping notifications.
func (p *acpPeer) request(method string, params any) (result json.RawMessage, rpcErr *struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}) {
	p.t.Helper()
	p.nextID++
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": p.nextID, "method": method, "params": params})
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
	for p.out.Scan() {
		var m struct {
			ID     *int            `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(p.out.Bytes(), &m); err != nil {
			p.t.Fatalf("stdout carried a non-JSON line: %q", p.out.Text())
		}
		if m.Method == "" && m.ID != nil && *m.ID == p.nextID {
			return m.Result, m.Error
		}
	}
	p.t.Fatalf("%s: the agent closed stdout: %v", method, p.out.Err())
	return nil, nil
}

// TestACPOverTailnet runs the agent with --tsnet: it joins an in-process
// tailnet as an ephemeral node of its own and reaches the real router by
// MagicDNS name. The router sees the agent's node identity, and the
// tailnet grant (models: chat) decides: a turn on "chat" streams, a turn on
// "fast" fails cleanly with the router's 403 and the agent goes on.
func TestACPOverTailnet(t *testing.T) {
	quietTailnetInProcess()
	derpMap := integration.RunDERPAndSTUN(t, logger.Discard, "127.0.0.1")
	control := &testcontrol.Server{DERPMap: derpMap, DNSConfig: &tailcfg.DNSConfig{Proxied: true}, MagicDNSDomain: "tail-scale.ts.net", Logf: logger.Discard}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Start()
	defer control.HTTPTestServer.Close()
	control.SetGlobalAppCaps(tailcfg.PeerCapMap{"anvil-serving.dev/cap/router": {tailcfg.RawMessage(`{"models":["chat"]}`)}})

	_, serveURL, stopServe, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopServe()
	routerCfg := "[tailnet]\nhostname = \"anvil\"\nrequire_grant = true\n" +
		tierConfig(serveURL)[len("\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"):] + "fast = \"local-a\"\n"
	router := exec.Command(binary, "serve", "--config", writeConfig(t, routerCfg), "--log-format", "json")
	router.Env = append(os.Environ(), loopbackOnlyEnv...)
	router.Env = append(router.Env, "TS_CONTROL_URL="+control.HTTPTestServer.URL, "TS_STATE_DIR="+t.TempDir(), "ANVIL_SERVING_HOME="+t.TempDir())
	routerErr, _ := router.StderrPipe()
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Process.Kill(); router.Wait() })
	routerLog := newLineWaiter(routerErr)
	routerLog.waitFor(t, regexp.MustCompile(`anvil-router ready`), 60*time.Second)

	for _, tc := range []struct{ model, wantErr string }{
		{"chat", ""},
		{"fast", "403"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			agentCfg := filepath.Join(t.TempDir(), "acp.toml")
			os.WriteFile(agentCfg, []byte("[acp]\nenabled = true\ndefault_model = \""+tc.model+"\"\n"), 0o600)
			agent := exec.Command(binary, "acp", "--config", agentCfg, "--tsnet", "--router", "http://anvil")
			agent.Env = append(os.Environ(), loopbackOnlyEnv...)
			agent.Env = append(agent.Env, "TS_CONTROL_URL="+control.HTTPTestServer.URL, "TS_AUTHKEY=tskey-acp-test-secret")
			in, _ := agent.StdinPipe()
			out, _ := agent.StdoutPipe()
			stderr, _ := agent.StderrPipe()
			if err := agent.Start(); err != nil {
				t.Fatal(err)
			}
			agentLog := newLineWaiter(stderr)
			defer func() {
				in.Close()
				done := make(chan error, 1)
				go func() { done <- agent.Wait() }()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("agent exit: %v\n%s", err, agentLog.all())
					}
				case <-time.After(15 * time.Second):
					agent.Process.Kill()
					t.Errorf("the agent did not exit when stdin closed")
				}
				if strings.Contains(agentLog.all(), "tskey-acp-test-secret") {
					t.Error("the auth key appears in the agent's log")
				}
			}()
			sc := bufio.NewScanner(out)
			sc.Buffer(nil, 1<<20)
			p := &acpPeer{t: t, in: in, out: sc}
			if _, e := p.request("initialize", map[string]any{"protocolVersion": 1, "clientCapabilities": map[string]any{}}); e != nil {
				t.Fatalf("initialize: %+v", e)
			}
			res, e := p.request("session/new", map[string]any{"cwd": t.TempDir(), "mcpServers": []any{}})
			if e != nil {
				t.Fatalf("session/new: %+v", e)
			}
			var s struct{ SessionID string }
			json.Unmarshal(res, &s)
			prompt := map[string]any{"sessionId": s.SessionID, "prompt": []any{map[string]string{"type": "text", "text": "fake:text"}}}
			res, e = p.request("session/prompt", prompt)
			if tc.wantErr == "" {
				if e != nil || !strings.Contains(string(res), `"end_turn"`) {
					t.Fatalf("prompt: %s %+v\n%s", res, e, agentLog.all())
				}
				// The router saw the agent's own node.
				routerLog.waitFor(t, regexp.MustCompile(`"msg":"request".*"node":"anvil-acp-[0-9a-f]+"`), 5*time.Second)
				return
			}
			if e == nil || !strings.Contains(e.Message, tc.wantErr) || !strings.Contains(e.Message, "fast") {
				t.Fatalf("prompt on a model the grant does not cover: %s %+v, want an error with %s", res, e, tc.wantErr)
			}
			t.Logf("the turn failed cleanly: %s", e.Message)
			// The agent goes on.
			if _, e := p.request("session/new", map[string]any{"cwd": t.TempDir(), "mcpServers": []any{}}); e != nil {
				t.Fatalf("session/new after the refusal: %+v", e)
			}
		})
	}
}
