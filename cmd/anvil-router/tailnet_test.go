package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

func TestNodeOptions(t *testing.T) {
	file := config.Tailnet{Hostname: "anvil", StateDir: "/var/lib/anvil/ts", ControlURL: "https://hs.example.com", AdvertiseTags: []string{"tag:anvil"}, Ephemeral: true}
	tests := []struct {
		name    string
		env     map[string]string
		want    tsrouter.NodeOptions
		wantErr string
	}{
		{name: "file only", want: tsrouter.NodeOptions{Hostname: "anvil", Dir: "/var/lib/anvil/ts", ControlURL: "https://hs.example.com", AdvertiseTags: []string{"tag:anvil"}, Ephemeral: true}},
		{name: "environment wins", env: map[string]string{
			"TS_HOSTNAME": "anvil-2", "TS_STATE_DIR": "/state", "TS_CONTROL_URL": "http://127.0.0.1:8080",
			"TS_ADVERTISE_TAGS": "tag:a, tag:b", "TS_AUTHKEY": "tskey-auth-xyz",
		}, want: tsrouter.NodeOptions{Hostname: "anvil-2", Dir: "/state", ControlURL: "http://127.0.0.1:8080", AdvertiseTags: []string{"tag:a", "tag:b"}, Ephemeral: true, AuthKey: "tskey-auth-xyz"}},
		{name: "TS_AUTH_KEY spelling", env: map[string]string{"TS_AUTH_KEY": "k"}, want: tsrouter.NodeOptions{Hostname: "anvil", Dir: "/var/lib/anvil/ts", ControlURL: "https://hs.example.com", AdvertiseTags: []string{"tag:anvil"}, Ephemeral: true, AuthKey: "k"}},
		{name: "bad hostname", env: map[string]string{"TS_HOSTNAME": "a b"}, wantErr: "TS_HOSTNAME"},
		{name: "bad control URL", env: map[string]string{"TS_CONTROL_URL": "hs:8080"}, wantErr: "TS_CONTROL_URL"},
		{name: "bad tag", env: map[string]string{"TS_ADVERTISE_TAGS": "anvil"}, wantErr: "TS_ADVERTISE_TAGS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nodeOptions(file, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// Without a state dir anywhere, the user's config dir is used.
	got, err := nodeOptions(config.Tailnet{Hostname: "anvil"}, func(string) string { return "" })
	if err != nil || !strings.HasSuffix(got.Dir, "anvil-router/tailscale") {
		t.Errorf("default dir %q, %v", got.Dir, err)
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer ok.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer sick.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	cfgWithLocal := writeConfig(t, "[server]\nlocal_listen = \""+addr(ok)+"\"\n"+tierConfig("http://127.0.0.1:9")[len("\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"):])
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"healthy", []string{"--addr", addr(ok)}, 0},
		{"unhealthy status", []string{"--addr", addr(sick)}, 1},
		{"nothing listening", []string{"--addr", freePort(t)}, 1},
		{"address from the config", []string{"--config", cfgWithLocal}, 0},
		{"refuses a non-loopback address", []string{"--addr", "192.0.2.1:80"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), binary, append([]string{"healthcheck"}, tc.args...)...)
			cmd.Env = os.Environ()
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.want {
				t.Errorf("exit %d, want %d: %s", code, tc.want, out)
			}
		})
	}
}
