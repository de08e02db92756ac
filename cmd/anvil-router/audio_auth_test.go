package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAudioRoutesRequireTheRouterToken: audio routes relay caller media,
// so a config that declares them loads (check passes, as for the shipped
// scaffolds) but serve refuses to start until [server].auth_env is set and
// resolves — and starts once it is.
func TestAudioRoutesRequireTheRouterToken(t *testing.T) {
	const audio = `
[[router.audio_routes]]
id = "stt-main"
purpose = "stt"
model = "whisper"
base_url = "http://127.0.0.1:9/v1"
`
	// tierConfig sets [server].auth_env; the same file without it.
	withAuth := tierConfig("http://127.0.0.1:9") + audio
	withoutAuth := strings.Replace(withAuth, "[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n", "", 1)
	if withoutAuth == withAuth {
		t.Fatal("test setup: could not remove [server].auth_env")
	}
	noAuth, auth := writeConfig(t, withoutAuth), writeConfig(t, withAuth)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"check accepts audio routes without auth", []string{"check", "--config", noAuth}, 0, "1 audio routes"},
		{"serve refuses audio routes without auth", []string{"serve", "--config", noAuth, "--dev-listen", "127.0.0.1:0"}, 2, "[server].auth_env must be set"},
		{"serve refuses an unresolved token", []string{"serve", "--config", auth, "--dev-listen", "127.0.0.1:0"}, 2, "ANVIL_TEST_ROUTER_TOKEN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binary, tc.args...)
			cmd.Env = append(os.Environ(), "ANVIL_SERVING_HOME="+t.TempDir(), "HOME="+t.TempDir())
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}

	// With the token set, the same file serves: /healthz lists the audio
	// endpoint.
	port := freePort(t)
	cmd := exec.CommandContext(t.Context(), binary, "serve", "--config", auth, "--dev-listen", port)
	cmd.Env = append(os.Environ(), "ANVIL_SERVING_HOME="+t.TempDir(), "HOME="+t.TempDir(), "ANVIL_TEST_ROUTER_TOKEN=tok-audio-test")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitHealthy(t, "http://"+port)
	resp, err := http.Get("http://" + port + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"/v1/audio/transcriptions"`) {
		t.Errorf("/healthz does not list the audio endpoint: %s", body)
	}
}
