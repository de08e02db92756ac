package main

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// syncLog is a process's stderr, readable while it runs.
type syncLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestServeAdminAuth: serve resolves [admin.auth]'s variables at start
// and refuses to start, naming the variable, when one is unset; a
// configured method works end to end; method none is announced with a
// warning.
func TestServeAdminAuth(t *testing.T) {
	_, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "served-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const (
		routerTok = "tok-secret-1234567890"
		adminTok  = "adm-secret-1234567890"
	)
	serve := func(t *testing.T, table string, extraEnv ...string) (base string, logs *syncLog) {
		t.Helper()
		addr := freePort(t)
		logs = &syncLog{}
		cmd := exec.Command(binary, "serve", "--config", writeConfig(t, tierConfig(url)+table), "--dev-listen", addr, "--log-format", "json")
		cmd.Env = append(os.Environ(), append([]string{"ANVIL_SERVING_HOME=" + t.TempDir(), "HOME=" + t.TempDir(), "ANVIL_TEST_ROUTER_TOKEN=" + routerTok}, extraEnv...)...)
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		base = "http://" + addr
		waitHealthy(t, base)
		return base, logs
	}
	status := func(t *testing.T, url string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, tc := range []struct{ name, table, variable string }{
		{"bearer_token", "[admin.auth]\nmethod = \"bearer_token\"\ntoken_env = \"ANVIL_TEST_ADMIN_TOKEN\"\n", "ANVIL_TEST_ADMIN_TOKEN"},
		{"basic", "[admin.auth]\nmethod = \"basic\"\nusername = \"ops\"\npassword_env = \"ANVIL_TEST_ADMIN_PASSWORD\"\n", "ANVIL_TEST_ADMIN_PASSWORD"},
		{"auth_env", "[admin]\nauth_env = \"ANVIL_TEST_ADMIN_TOKEN\"\n", "ANVIL_TEST_ADMIN_TOKEN"},
	} {
		t.Run("unset variable refuses the start: "+tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binary, "serve", "--config", writeConfig(t, tierConfig(url)+tc.table), "--dev-listen", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), "ANVIL_SERVING_HOME="+t.TempDir(), "HOME="+t.TempDir(), "ANVIL_TEST_ROUTER_TOKEN="+routerTok)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), tc.variable) {
				t.Errorf("exit %d, want 2 and the variable named:\n%s", code, out)
			}
		})
	}

	t.Run("bearer_token end to end", func(t *testing.T) {
		base, logs := serve(t, "[admin.auth]\nmethod = \"bearer_token\"\ntoken_env = \"ANVIL_TEST_ADMIN_TOKEN\"\n", "ANVIL_TEST_ADMIN_TOKEN="+adminTok)
		if s := status(t, base+"/v1/stats", "Authorization", "Bearer "+adminTok); s != 200 {
			t.Errorf("admin token: %d", s)
		}
		if s := status(t, base+"/v1/stats", "Authorization", "Bearer "+routerTok); s != 403 {
			t.Errorf("router token only: %d, want 403", s)
		}
		if strings.Contains(logs.String(), adminTok) || strings.Contains(logs.String(), routerTok) {
			t.Errorf("a token is in the log:\n%s", logs)
		}
	})

	t.Run("none warns and serves loopback admins", func(t *testing.T) {
		base, logs := serve(t, "[admin.auth]\nmethod = \"none\"\n")
		if s := status(t, base+"/v1/stats", "Authorization", "Bearer "+routerTok); s != 200 {
			t.Errorf("router token, method none, dev listener: %d", s)
		}
		out := logs.String()
		if !strings.Contains(out, `"level":"WARN","msg":"ADMIN AUTHENTICATION IS OFF`) {
			t.Errorf("no start-up warning for method none:\n%s", out)
		}
	})
}
