package tsrouter_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestCompletionsRapidCancels: autocomplete sends a request per keystroke
// and abandons most of them. Every abandoned request — queued for the
// tier, waiting for the first token, or mid-stream — must release its
// slot and cancel the serve at once: the serve sees each disconnect, none
// completes, and afterwards the tier's whole concurrency is free.
func TestCompletionsRapidCancels(t *testing.T) {
	const slots = 24
	fake, url := startFake(t, fakeserve.Options{TTFT: 20 * time.Second})
	cfg := strings.Replace(oneTier(url, "max_concurrency = 24\nmax_queue = 512\ntimeout = 60"), "[router]\n", "[router]\nqueue_timeout = 30\n", 1)
	base := startRouter(t, cfg, routerOpts{token: routerToken, slots: 1024})

	// send posts a completion with ctx; stream requests return once the
	// first line arrived (nil when the request ended first).
	send := func(ctx context.Context, stream bool) *http.Response {
		body := `{"model":"chat","prompt":"def f(","suffix":"):\n    pass","max_tokens":16,"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+routerToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		return resp
	}
	settled := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			st := fake.Stats()
			active := tierActive(t, base)
			if st.InFlight == 0 && active == 0 && st.Cancelled == st.Requests {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: serve %+v, tier active %d: a request was not cancelled or a lease leaked", what, st, active)
			}
		}
		if st := fake.Stats(); st.Completed != 0 || st.Aborted != 0 {
			t.Errorf("%s: serve %+v: an abandoned request was answered in full", what, st)
		}
	}

	// 200 keystrokes, eight bursts of 25, each abandoned 1–8 ms after it
	// was sent: wherever it was by then.
	for burst := range 8 {
		var wg sync.WaitGroup
		for i := range 25 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(8))*time.Millisecond)
				defer cancel()
				if resp := send(ctx, (burst+i)%2 == 0); resp != nil {
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}
	settled("200 rapid cancels")
	t.Logf("rapid cancels: %+v at the serve", fake.Stats())

	// Abandoned while the serve works on them: every disconnect reaches the
	// serve within a few milliseconds, streamed or not.
	for _, stream := range []bool{false, true} {
		before := fake.Stats().Cancelled
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range slots {
			wg.Go(func() {
				if resp := send(ctx, stream); resp != nil {
					resp.Body.Close()
				}
			})
		}
		waitInFlight(t, fake, slots)
		start := time.Now()
		cancel()
		wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := fake.WaitCancelled(wctx, before+slots)
		wcancel()
		if err != nil {
			t.Fatalf("stream=%v: the serve saw %d of %d disconnects", stream, fake.Stats().Cancelled-before, slots)
		}
		within(t, "the serve seeing every disconnect", time.Since(start), time.Second)
		wg.Wait()
		settled("cancelled in flight")
	}

	// Abandoned mid-stream, after the first text arrived.
	fake.SetOptions(func(o *fakeserve.Options) {
		o.TTFT, o.Pace = 0, 100*time.Millisecond
		o.Deltas = strings.Split(strings.Repeat("tok ", 50), " ")[:50]
	})
	before := fake.Stats().Cancelled
	var wg sync.WaitGroup
	for range slots {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The serve paces 50 deltas 100 ms apart: the first arrives
			// at once only if every event is flushed as it comes.
			start := time.Now()
			resp := send(ctx, true)
			if resp == nil {
				t.Error("mid-stream: request failed")
				return
			}
			defer resp.Body.Close()
			if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); !strings.HasPrefix(line, "data: {") {
				t.Errorf("mid-stream: first line %q", line)
			}
			within(t, "the first streamed event", time.Since(start), 2*time.Second)
		})
	}
	wg.Wait()
	wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer wcancel()
	if err := fake.WaitCancelled(wctx, before+slots); err != nil {
		t.Fatalf("mid-stream: the serve saw %d of %d disconnects", fake.Stats().Cancelled-before, slots)
	}
	settled("cancelled mid-stream")

	// No lease leaked: the tier's whole concurrency reaches the serve.
	fake.SetOptions(func(o *fakeserve.Options) { o.TTFT = 20 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	for range slots {
		wg.Go(func() {
			if resp := send(ctx, false); resp != nil {
				resp.Body.Close()
			}
		})
	}
	waitInFlight(t, fake, slots)
	cancel()
	wg.Wait()
	settled("full concurrency")
	if m := routerInFlight(t, base); m != "0" {
		t.Errorf("anvil_router_in_flight %s after every request ended, want 0", m)
	}
}

// waitInFlight waits until the serve is answering n requests.
func waitInFlight(t *testing.T, fake *fakeserve.Server, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); fake.Stats().InFlight < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests reached the serve: a slot leaked", fake.Stats().InFlight, n)
		}
	}
}

// tierActive is local-a's active requests as the transition view reports.
func tierActive(t *testing.T, base string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/admin/transition?tier_id=local-a", nil)
	req.Header.Set("Authorization", "Bearer "+routerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Tiers []struct {
			Active int `json:"active_requests"`
		}
	}
	if err := json.Unmarshal([]byte(readAll(t, resp)), &out); err != nil || len(out.Tiers) != 1 {
		t.Fatalf("transition view: %v %+v", err, out)
	}
	return out.Tiers[0].Active
}

var inFlightLine = regexp.MustCompile(`(?m)^anvil_router_in_flight (\S+)$`)

// routerInFlight is the router's in-flight gauge.
func routerInFlight(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+routerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m := inFlightLine.FindStringSubmatch(readAll(t, resp))
	if m == nil {
		t.Fatal("no anvil_router_in_flight in /metrics")
	}
	return m[1]
}
