package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestStatsSurviveRestart: usage counted before a clean stop (SIGTERM:
// the final snapshot) and before a kill -9 (the last periodic snapshot)
// is there after the next start; uptime starts again.
func TestStatsSurviveRestart(t *testing.T) {
	_, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	snapshot := filepath.Join(t.TempDir(), "stats.bin")
	cfg := writeConfig(t, tierConfig(url)+`
[admin.stats.persistence]
path = "`+snapshot+`"
snapshot_interval = "1s"
`)
	home := t.TempDir()
	const token = "tok-secret-1234"
	start := func() (*exec.Cmd, string, *lockedLog) { return startServe(t, cfg, token, home) }
	do := func(method, url, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	requests := func(base string) (int64, float64) {
		code, body := do("GET", base+"/admin/stats", "")
		var st struct {
			Uptime float64 `json:"uptime_seconds"`
			Totals struct {
				Requests int64 `json:"requests"`
			} `json:"totals"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("/admin/stats: %d %s", code, body)
		}
		return st.Totals.Requests, st.Uptime
	}
	chat := func(base string, n int) {
		for range n {
			if code, body := do("POST", base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`); code != 200 {
				t.Fatalf("chat: %d %s", code, body)
			}
		}
		time.Sleep(50 * time.Millisecond) // counted when the handler returns
	}

	cmd, base, logs := start()
	chat(base, 3)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs)
	}
	cmd, base, logs = start()
	if n, up := requests(base); n != 3 || up > 30 {
		t.Fatalf("after a clean stop: %d requests, uptime %v; want 3 and a fresh uptime\n%s", n, up, logs)
	}
	chat(base, 2)
	time.Sleep(2500 * time.Millisecond) // a periodic snapshot
	cmd.Process.Kill()
	cmd.Wait()
	_, base, logs = start()
	if n, _ := requests(base); n != 5 {
		t.Fatalf("after kill -9: %d requests, want 5\n%s", n, logs)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("router token in logs")
	}
}

// lockedLog is a child's stderr, read by the test while the child still
// writes it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestStatsCorruptSnapshotStartsFresh: a snapshot that does not load is
// a warning and fresh counts, never a failed start.
func TestStatsCorruptSnapshotStartsFresh(t *testing.T) {
	snapshot := filepath.Join(t.TempDir(), "stats.bin")
	os.WriteFile(snapshot, []byte("ANVIL-USAGE\nnot really"), 0o600)
	cfg := writeConfig(t, tierConfig("http://127.0.0.1:9")+`
[admin.stats.persistence]
path = "`+snapshot+`"
`)
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--config", cfg, "--dev-listen", addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "ANVIL_TEST_ROUTER_TOKEN=tok-secret-1234", "ANVIL_SERVING_HOME="+t.TempDir())
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	logs := newLineWaiter(out)
	waitHealthy(t, "http://"+addr)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.all(), "usage snapshot unreadable; starting fresh") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the corrupt snapshot:\n%s", logs.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatsTokenTrackingReloadsOnSIGHUP: token_tracking is applied on
// SIGHUP without a restart.
func TestStatsTokenTrackingReloadsOnSIGHUP(t *testing.T) {
	_, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	stats := func(tracking string) string {
		return tierConfig(url) + "\n[admin.stats]\ntoken_tracking = " + tracking + "\n[admin.stats.persistence]\nenabled = false\n"
	}
	cfg := writeConfig(t, stats("true"))
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--config", cfg, "--dev-listen", addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "ANVIL_TEST_ROUTER_TOKEN=tok-secret-1234", "ANVIL_SERVING_HOME="+t.TempDir())
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	logs := newLineWaiter(out)
	base := "http://" + addr
	waitHealthy(t, base)
	do := func(method, path, body string) string {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-secret-1234")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String()
	}
	requests := int64(0)
	tokens := func() int64 {
		do("POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		requests++
		var st struct {
			Totals struct {
				Requests    int64 `json:"requests"`
				InputTokens int64 `json:"input_tokens"`
			} `json:"totals"`
		}
		// Counted when the handler returns, maybe just after the reply.
		for deadline := time.Now().Add(5 * time.Second); st.Totals.Requests < requests && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			json.Unmarshal([]byte(do("GET", "/admin/stats", "")), &st)
		}
		return st.Totals.InputTokens
	}
	first := tokens()
	if first == 0 {
		t.Fatal("no tokens counted with token_tracking on")
	}
	os.WriteFile(cfg, []byte(stats("false")), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.all(), `"token_tracking":false`) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", logs.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if again := tokens(); again != first {
		t.Fatalf("tokens went from %d to %d with token_tracking off", first, again)
	}
}

// TestSIGHUPDuringDrainIsHarmless: a SIGHUP (a config reload from
// systemd, say) that arrives while the router drains after SIGTERM does
// not kill it: the in-flight stream finishes, the router exits cleanly and
// writes its final usage snapshot.
func TestSIGHUPDuringDrainIsHarmless(t *testing.T) {
	fake, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model",
		Deltas: strings.Split(strings.Repeat("x ", 40), " "), Pace: 25 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	snapshot := filepath.Join(t.TempDir(), "stats.bin")
	cfg := writeConfig(t, tierConfig(url)+"\n[admin.stats.persistence]\npath = \""+snapshot+"\"\nsnapshot_interval = \"1h\"\n")
	cmd, base, logs := startServe(t, cfg, "tok-secret-1234", t.TempDir())
	streamed := make(chan string, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer tok-secret-1234")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			streamed <- err.Error()
			return
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		streamed <- b.String()
	}()
	for deadline := time.Now().Add(5 * time.Second); fake.Stats().InFlight < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream never started")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond) // into the drain
	cmd.Process.Signal(syscall.SIGHUP)
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("the router did not exit cleanly (%v; %v)\n%s", err, cmd.ProcessState, logs)
	}
	if body := <-streamed; !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("the in-flight stream was cut: …%q", body[max(0, len(body)-120):])
	}
	if _, err := os.Stat(snapshot); err != nil {
		t.Errorf("no final snapshot: %v\n%s", err, logs)
	}
}

// startServe starts anvil-router serve on the dev listener with cfg, the
// router token and ANVIL_SERVING_HOME home, and waits until it is healthy.
// It returns the process, its base URL and its log.
func startServe(t *testing.T, cfg, token, home string) (*exec.Cmd, string, *lockedLog) {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--config", cfg, "--dev-listen", addr, "--log-format", "json")
	cmd.Env = append(os.Environ(), "ANVIL_TEST_ROUTER_TOKEN="+token, "ANVIL_SERVING_HOME="+home)
	logs := &lockedLog{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHealthy(t, "http://"+addr)
	return cmd, "http://" + addr, logs
}
