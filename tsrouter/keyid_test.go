package tsrouter_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestAdminKeyCreateValidatesIDs: ids end up in admin URLs, logs and
// records, so only a safe charset and length is accepted; a key whose
// store directory does not exist yet is still created (the directory is
// made, 0700), and no error names a server path.
func TestAdminKeyCreateValidatesIDs(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	store := filepath.Join(t.TempDir(), "state", "not-yet", "keys.json")
	h := newHandler(t, keysConfig(url, "blocking"), routerOpts{token: routerToken, adminToken: "admin-secret-0123456789", keyStore: store, env: map[string]string{"PARTNER_KEY": partnerKey}},
		slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	create := func(id string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"id": id, "user_id": "u", "organization_id": "o", "scopes": []string{"read"}})
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/admin/api-keys", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", routerToken)
		req.Header.Set("X-Admin-Token", "admin-secret-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}

	t.Run("missing store directory is created", func(t *testing.T) {
		if s, body := create("ci-bot.v2_x"); s != 201 {
			t.Fatalf("create: %d %s", s, body)
		}
		st, err := os.Stat(filepath.Dir(store))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("store dir: %v %v, want 0700", st, err)
		}
	})
	for _, tc := range []struct{ name, id string }{
		{"slash", "a/b"},
		{"dot-dot path", "../../x"},
		{"5000 characters", strings.Repeat("k", 5000)},
		{"65 characters", strings.Repeat("k", 65)},
		{"newline", "bot\nadmin"},
		{"bidi override", "bot\u202etxt.exe"},
		{"leading dot", ".hidden"},
		{"space", "ci bot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, body := create(tc.id)
			if s != 400 || !strings.Contains(body, "invalid_request_error") {
				t.Errorf("create %q: %d %s, want 400", tc.id, s, body)
			}
			if strings.Contains(body, filepath.Dir(store)) {
				t.Errorf("error names a server path: %s", body)
			}
		})
	}
}
