package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestServeRemovesStaleTempFiles: temporary copies a kill -9 left beside
// the key store and the admission state are gone once serve has started.
func TestServeRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "keys.json")
	admission := filepath.Join(dir, "admission.json")
	old := time.Now().Add(-time.Hour)
	debris := []string{filepath.Join(dir, ".keys.json.tmp-4242"), filepath.Join(dir, ".admission.json.tmp-77")}
	for _, p := range debris {
		if err := os.WriteFile(p, []byte(`{"keys":[{"sha256":"rotated"}]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	const serverSection = "\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"
	cfg := "[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\nadmission_state_path = \"" + admission + "\"\n\n" +
		"[api_keys]\nstore_path = \"" + store + "\"\n" + tierConfig("http://127.0.0.1:9")[len(serverSection):]
	addr := freePort(t)
	cmd := exec.Command(binary, "serve", "--config", writeConfig(t, cfg), "--dev-listen", addr, "--log-format", "json")
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
	for _, p := range debris {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after start (%v)\n%s", filepath.Base(p), err, logs.all())
		}
	}
}
