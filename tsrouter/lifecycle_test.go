package tsrouter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// admin posts a transition with the router token and decodes the reply.
func admin(t *testing.T, base, body string) (int, map[string]any) {
	t.Helper()
	resp := post(t, t.Context(), base+"/v1/admin/transition", body, "Authorization", "Bearer "+routerToken)
	var out map[string]any
	json.Unmarshal([]byte(readAll(t, resp)), &out)
	return resp.StatusCode, out
}

func chatStatus(t *testing.T, base string) int {
	t.Helper()
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`, "Authorization", "Bearer "+routerToken)
	readAll(t, resp)
	return resp.StatusCode
}

// countingServe answers /health (counting probes, optionally slowly) and
// chat; it stands in for a serve whose probes we want to observe.
type countingServe struct {
	probes    atomic.Int64
	chats     atomic.Int64
	probeWait time.Duration
	healthy   atomic.Bool
	srv       *httptest.Server
}

func startCounting(t *testing.T, probeWait time.Duration) (*countingServe, string) {
	c := &countingServe{probeWait: probeWait}
	c.healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			c.probes.Add(1)
			time.Sleep(c.probeWait)
			if !c.healthy.Load() {
				w.WriteHeader(503)
			}
		default:
			c.chats.Add(1)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","model":"served-model","choices":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	c.srv = srv
	return c, srv.URL
}

// TestProbeCacheAndSingleFlight: concurrent requests to a tier whose
// readiness is unknown cause exactly one probe; the result is reused until
// the interval passes.
func TestProbeCacheAndSingleFlight(t *testing.T) {
	serve, url := startCounting(t, 50*time.Millisecond)
	cfg := strings.Replace(oneTier(url, `health_path = "/health"`), "[router]\n", "[router]\navailability_probe_interval = 0.5\navailability_probe_background = false\n", 1)
	base := startRouter(t, cfg, routerOpts{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`)
			if body := readAll(t, resp); resp.StatusCode != 200 {
				t.Errorf("status %d %s", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if n := serve.probes.Load(); n != 1 {
		t.Errorf("%d probes for 20 concurrent requests, want 1", n)
	}
	if n := serve.chats.Load(); n != 20 {
		t.Errorf("%d chats reached the serve, want 20", n)
	}
	time.Sleep(600 * time.Millisecond)
	readAll(t, post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`))
	if n := serve.probes.Load(); n != 2 {
		t.Errorf("%d probes after the interval, want 2", n)
	}

	// An unhealthy serve: the exhaustion status at once, the serve is never called.
	serve.healthy.Store(false)
	time.Sleep(600 * time.Millisecond)
	before := serve.chats.Load()
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`)
	if body := readAll(t, resp); resp.StatusCode != 503 {
		t.Errorf("unhealthy serve: %d %s", resp.StatusCode, body)
	}
	if serve.chats.Load() != before {
		t.Error("the serve was called although its probe failed")
	}
}

// identityTier is a tier with model identity checks on the fake serve.
func identityTier(url string) string {
	cfg := oneTier(url, "health_path = \"/health\"\nmodel_identity = true")
	return strings.Replace(cfg, "[router]\n", "[router]\navailability_probe_interval = 0.2\navailability_probe_background = false\n", 1)
}

// TestIdentityGate: a serve answering as another model keeps the tier out;
// readmission is refused until it answers as the expected model.
func TestIdentityGate(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Model: "some-other-model"})
	base := startRouter(t, identityTier(url), routerOpts{token: routerToken})
	if s := chatStatus(t, base); s != 503 {
		t.Errorf("identity mismatch: %d, want 503", s)
	}
	if fake.Stats().Requests != 0 {
		t.Error("chat reached a serve with the wrong model")
	}
	if s, out := admin(t, base, `{"action":"quiesce","tier_id":"local-a","confirm":true,"dry_run":false,"reason":"promotion-test"}`); s != 200 || out["applied"] != true {
		t.Fatalf("quiesce: %d %v", s, out)
	}
	s, out := admin(t, base, `{"action":"readmit","tier_id":"local-a","confirm":true,"dry_run":false}`)
	res, _ := out["result"].(map[string]any)
	if s != 200 || res["readmitted"] != false || res["reason"] != "identity_mismatch" {
		t.Errorf("readmit on the wrong model: %d %v", s, out)
	}
	fake.SetOptions(func(o *fakeserve.Options) { o.Model = "served-model" })
	s, out = admin(t, base, `{"action":"readmit","tier_id":"local-a","confirm":true,"dry_run":false}`)
	res, _ = out["result"].(map[string]any)
	if s != 200 || res["readmitted"] != true {
		t.Fatalf("readmit on the right model: %d %v", s, out)
	}
	if s := chatStatus(t, base); s != 200 {
		t.Errorf("after readmit: %d", s)
	}
}

// TestQuiesceDrainReadmit: quiesce with a stream in flight (it finishes,
// new requests get 503), drain wakes when the last lease ends, and times
// out when it does not.
func TestQuiesceDrainReadmit(t *testing.T) {
	deltas := strings.Split(strings.Repeat("x ", 10), " ")[:10]
	_, url := startFake(t, fakeserve.Options{Deltas: deltas, Pace: 40 * time.Millisecond})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})

	// Dry run by default: nothing changes.
	if s, out := admin(t, base, `{"action":"quiesce","tier_id":"local-a"}`); s != 200 || out["applied"] != false || out["dry_run"] != true {
		t.Errorf("dry run: %d %v", s, out)
	}
	if s, _ := admin(t, base, `{"action":"quiesce","confirm":true,"dry_run":false}`); s != 400 {
		t.Errorf("missing tier_id: %d", s)
	}
	if s, _ := admin(t, base, `{"action":"drain","tier_id":"local-a","timeout":1}`); s != 400 {
		t.Errorf("drain before quiesce: %d, want 400", s)
	}

	inflight := startStream(t, base)
	if s, out := admin(t, base, `{"action":"quiesce","tier_id":"local-a","confirm":true,"dry_run":false,"reason":"operator"}`); s != 200 || out["applied"] != true {
		t.Fatalf("quiesce: %d %v", s, out)
	}
	if s := chatStatus(t, base); s != 503 {
		t.Errorf("new request on a quiesced tier: %d, want 503", s)
	}
	start := time.Now()
	s, out := admin(t, base, `{"action":"drain","tier_id":"local-a","timeout":10}`)
	res, _ := out["result"].(map[string]any)
	if s != 200 || res["drained"] != true || res["timed_out"] != false {
		t.Errorf("drain: %d %v", s, out)
	}
	// The stream had ~400 ms to go: drain must have waited for it, and
	// the stream must have ended cleanly.
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("drain returned after %v, want when the stream ended (~0.4s)", d)
	}
	select {
	case body := <-inflight:
		if !strings.HasSuffix(body, "data: [DONE]\n\n") {
			t.Errorf("in-flight stream did not finish: %q", body)
		}
	case <-time.After(time.Second):
		t.Error("drain returned but the in-flight stream had not ended")
	}

	// A drain that cannot finish times out, state unchanged.
	_, url2 := startFake(t, fakeserve.Options{Deltas: deltas, Pace: 200 * time.Millisecond})
	base2 := startRouter(t, oneTier(url2, ""), routerOpts{token: routerToken})
	inflight = startStream(t, base2)
	admin(t, base2, `{"action":"quiesce","tier_id":"local-a","confirm":true,"dry_run":false}`)
	start = time.Now()
	s, out = admin(t, base2, `{"action":"drain","tier_id":"local-a","timeout":0.2}`)
	res, _ = out["result"].(map[string]any)
	snap, _ := res["snapshot"].(map[string]any)
	if s != 200 || res["drained"] != false || res["timed_out"] != true || snap["state"] != "quiesced" || snap["active_requests"] != 1.0 {
		t.Errorf("timed-out drain: %d %v", s, out)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("drain timeout took %v", d)
	}
	<-inflight

	// Readmit needs model identity configured.
	s, out = admin(t, base, `{"action":"readmit","tier_id":"local-a","confirm":true,"dry_run":false}`)
	res, _ = out["result"].(map[string]any)
	if s != 200 || res["readmitted"] != false || res["reason"] != "identity_not_configured" {
		t.Errorf("readmit without identity: %d %v", s, out)
	}
}

// startStream starts a streamed chat, returns once its first line has
// arrived, and delivers the whole body when the stream ends.
func startStream(t *testing.T, base string) <-chan string {
	out := make(chan string, 1)
	first := make(chan struct{})
	go func() {
		resp := post(t, context.Background(), base+"/v1/chat/completions", `{"model":"chat","stream":true}`, "Authorization", "Bearer "+routerToken)
		rd := bufio.NewReader(resp.Body)
		line, _ := rd.ReadString('\n')
		close(first)
		rest, _ := io.ReadAll(rd)
		resp.Body.Close()
		out <- line + string(rest)
	}()
	<-first
	return out
}

// TestNoLeaseLeak: many clients leaving before the first token, then the
// tier's full concurrency is still available; past it, requests queue and
// time out into the exhaustion status.
func TestNoLeaseLeak(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{TTFT: 300 * time.Millisecond})
	// The tier's own timeout outlasts the slow requests below, so only
	// they decide when a slot frees.
	cfg := strings.Replace(oneTier(url, "max_concurrency = 2\nmax_queue = 4\ntimeout = 10"), "[router]\n", "[router]\nqueue_timeout = 0.3\n", 1)
	base := startRouter(t, cfg, routerOpts{token: routerToken})
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"chat","stream":true}`))
			req.Header.Set("Authorization", "Bearer "+routerToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	waitActive := func(want float64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			resp, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/admin/transition?tier_id=local-a", nil)
			resp.Header.Set("Authorization", "Bearer "+routerToken)
			r, err := http.DefaultClient.Do(resp)
			if err != nil {
				t.Fatal(err)
			}
			var out struct{ Tiers []map[string]any }
			json.Unmarshal([]byte(readAll(t, r)), &out)
			if len(out.Tiers) == 1 && out.Tiers[0]["active_requests"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("active requests %v, want %v", out.Tiers, want)
			}
		}
	}
	waitActive(0)

	// Both slots are usable: two slow requests reach the serve together.
	fake.SetOptions(func(o *fakeserve.Options) { o.TTFT = 4 * time.Second })
	var slow sync.WaitGroup
	for range 2 {
		slow.Go(func() { chatStatus(t, base) })
	}
	// Both hold the tier's slots (the serve's own in-flight count may
	// still include cancelled requests it has not noticed yet, so it
	// alone does not say the slow ones are in), and both reach the serve.
	waitActive(2)
	for deadline := time.Now().Add(5 * time.Second); fake.Stats().InFlight < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests reached the serve: a slot leaked", fake.Stats().InFlight)
		}
	}
	// A third waits in the queue and times out into 503.
	start := time.Now()
	if s := chatStatus(t, base); s != 503 {
		t.Errorf("queued past queue_timeout: %d, want 503", s)
	}
	// Well before the slow requests free a slot (4 s): the queue timeout,
	// not a freed slot, ended the wait. The margin is for loaded CI.
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("queue timeout after %v, want about 0.3s", d)
	}
	slow.Wait()
}

// TestQuiesceIntentSurvivesRestart: intent is written on quiesce and
// restored by the next start; promotion quiesces are not; a corrupt file
// refuses start.
func TestQuiesceIntentSurvivesRestart(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	dir := t.TempDir()
	path := filepath.Join(dir, "admission.json")
	cfg, err := config.Parse("t.toml", []byte(oneTier(url, "")))
	if err != nil {
		t.Fatal(err)
	}
	newSet := func() (*backends.Set, error) {
		set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
		if err != nil {
			return nil, err
		}
		return set, set.PersistIntent(path, slog.New(slog.DiscardHandler))
	}
	set, err := newSet()
	if err != nil {
		t.Fatal(err)
	}
	tier, _ := set.Tier("local-a")
	if _, err := tier.Quiesce("maintenance"); err != nil {
		t.Fatal(err)
	}
	set2, err := newSet()
	if err != nil {
		t.Fatal(err)
	}
	if tier2, _ := set2.Tier("local-a"); tier2.Snapshot().State != "quiesced" || tier2.Snapshot().Reason != "maintenance" {
		t.Errorf("after restart: %+v", tier2.Snapshot())
	}
	if _, err := tier.Quiesce("promotion"); err != nil {
		t.Fatal(err)
	}
	set3, _ := newSet()
	if tier3, _ := set3.Tier("local-a"); tier3.Snapshot().State != "admitting" {
		t.Errorf("a promotion quiesce was restored: %+v", tier3.Snapshot())
	}
	os.WriteFile(path, []byte(`{"version":1,"tiers":`), 0o600)
	if _, err := newSet(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt intent: %v, want a refusal", err)
	}
}

// TestAdminAccess: the transition endpoint needs the token or an admin
// grant; with no admin credential configured it does not exist.
func TestAdminAccess(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	open := startRouter(t, oneTier(url, ""), routerOpts{})
	resp := post(t, t.Context(), open+"/v1/admin/transition", `{"action":"status"}`)
	if body := readAll(t, resp); resp.StatusCode != 404 {
		t.Errorf("no auth configured: %d %s", resp.StatusCode, body)
	}
	gated := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	resp = post(t, t.Context(), gated+"/v1/admin/transition", `{"action":"status"}`)
	if readAll(t, resp); resp.StatusCode != 401 {
		t.Errorf("without the token: %d", resp.StatusCode)
	}
	if s, out := admin(t, gated, `{"action":"status"}`); s != 200 || len(out["tiers"].([]any)) != 1 {
		t.Errorf("status: %d %v", s, out)
	}
}

// TestOutageTurnsInto503Fast measures how long the first request after a
// serve stops answering takes to get the exhaustion status: a probe on the
// request path pays up to the probe timeout for a hung serve; the
// background prober has already marked the tier down.
func TestOutageTurnsInto503Fast(t *testing.T) {
	for _, background := range []bool{false, true} {
		name := map[bool]string{false: "on-demand probe", true: "background prober"}[background]
		t.Run(name, func(t *testing.T) {
			var hung atomic.Bool
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hung.Load() {
					<-r.Context().Done() // accepts, never answers
					return
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"id":"x","model":"served-model","choices":[]}`)
			}))
			defer srv.Close()
			cfg := strings.Replace(oneTier(srv.URL, `health_path = "/health"`), "[router]\n",
				"[router]\navailability_probe_interval = 0.1\navailability_probe_timeout = 0.5\navailability_probe_background = "+map[bool]string{false: "false", true: "true"}[background]+"\n", 1)
			cfgParsed, err := config.Parse("t.toml", []byte(cfg))
			if err != nil {
				t.Fatal(err)
			}
			set, _ := backends.New(cfgParsed.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			set.Start(ctx)
			tier, _ := set.Tier("local-a")
			if _, err := tier.Admit(t.Context()); err != nil {
				t.Fatalf("healthy serve refused: %v", err)
			}
			hung.Store(true)
			time.Sleep(time.Second) // the outage is a while old when the next request comes
			start := time.Now()
			_, err = tier.Admit(t.Context())
			d := time.Since(start)
			if err == nil {
				t.Fatal("hung serve admitted")
			}
			t.Logf("first request after the outage refused in %v", d)
			if background && d > 50*time.Millisecond {
				t.Errorf("with the background prober the refusal took %v; want immediate", d)
			}
			if !background && d < 400*time.Millisecond {
				t.Errorf("on-demand probe refused in %v; expected it to pay the probe timeout", d)
			}
		})
	}
}

// TestRefusedConnectionMarksTierDown: a refused connection on the relay
// path marks a probed tier down at once, so the following requests are
// refused without dialing until a probe sees the serve again.
func TestRefusedConnectionMarksTierDown(t *testing.T) {
	serve, url := startCounting(t, 0)
	cfg := strings.Replace(oneTier(url, `health_path = "/health"`), "[router]\n", "[router]\navailability_probe_interval = 60\navailability_probe_background = false\n", 1)
	cfgParsed, err := config.Parse("t.toml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	set, _ := backends.New(cfgParsed.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
	defer set.CloseIdle()
	tier, _ := set.Tier("local-a")
	if r := tier.Readiness(); !r.Available {
		t.Fatalf("healthy serve: %+v", r)
	}
	// The serve dies between probes (its port now refuses connections).
	serve.srv.Close()
	if _, err := tier.Complete(t.Context(), []byte(`{"model":"served-model"}`)); err == nil {
		t.Fatal("relay to a dead serve succeeded")
	}
	if r := tier.Readiness(); r.Available || r.Reason != "connection_refused" {
		t.Errorf("after a refused connection: %+v", r)
	}
	if _, err := tier.Admit(t.Context()); err == nil {
		t.Error("tier admitted after its serve refused a connection")
	}
}
