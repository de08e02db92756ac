package tsrouter_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestGuardrailsWebhookOnTheTailnet: a webhook on another tailnet node is
// reached through the router's own tsnet node (the host has no route to
// the tailnet), by its Tailscale IP and by its MagicDNS name; the hook
// sees the router's tailnet address.
func TestGuardrailsWebhookOnTheTailnet(t *testing.T) {
	tn := newTestTailnet(t)
	hookNode := tn.clientNode(t, "hooks")
	ln, err := hookNode.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var from atomic.Value
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		from.Store(r.RemoteAddr)
		var req struct {
			Texts []struct{ Text string } `json:"texts"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		action := "allow"
		for _, tx := range req.Texts {
			if strings.Contains(tx.Text, "bluebird") {
				action = "block"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"action": action, "category": "dangerous", "message": "internal project"})
	}))
	t.Cleanup(func() { ln.Close() })
	ip4, _ := hookNode.TailscaleIPs()
	_, url := startFake(t, fakeserve.Options{})
	for _, hookURL := range []string{"http://" + ip4.String() + "/check", "http://hooks.tail-scale.ts.net/check"} {
		t.Run(hookURL, func(t *testing.T) {
			r := tn.routerHandler(t, routerConfig(url, "\n[guardrails]\nenabled = true\n"+webhookTOML("tailnet-hook", "input", hookURL)), "")
			c := tn.client(t, "mini", "tag:mini")
			chat := func(text string) (int, string) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://anvil/v1/chat/completions",
					strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"`+text+`"}]}`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, readAll(t, resp)
			}
			before := calls.Load()
			if status, body := chat("status of bluebird"); status != 400 || !strings.Contains(body, "guardrail_blocked") || !strings.Contains(body, "tailnet-hook") {
				t.Errorf("a prompt the tailnet hook blocks: %d %s\naudit: %s", status, body, r.logs.String())
			}
			if status, body := chat("hello"); status != 200 {
				t.Errorf("a prompt the tailnet hook allows: %d %s", status, body)
			}
			if calls.Load()-before != 2 {
				t.Errorf("the hook was called %d times, want 2", calls.Load()-before)
			}
			host, _, _ := net.SplitHostPort(from.Load().(string))
			if want, _ := r.node.TSNet().TailscaleIPs(); host != want.String() {
				t.Errorf("the hook saw %s, want the router's tailnet address %s", host, want)
			}
		})
	}
}
