package tsrouter_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

const routerToken = "rt-0123456789abcdef-secret"

// TestAuthMatrix: with [server].auth_env set, every path but GET /healthz
// needs the router token, checked before route lookup.
func TestAuthMatrix(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   int
	}{
		{"no credential", "POST", "/v1/chat/completions", nil, 401},
		{"wrong bearer", "POST", "/v1/chat/completions", []string{"Authorization", "Bearer nope"}, 401},
		{"right bearer", "POST", "/v1/chat/completions", []string{"Authorization", "Bearer " + routerToken}, 200},
		{"bearer scheme is case-insensitive and trimmed", "POST", "/v1/chat/completions", []string{"Authorization", "bearer   " + routerToken + "  "}, 200},
		{"x-api-key", "POST", "/v1/chat/completions", []string{"X-Api-Key", routerToken}, 200},
		{"wrong x-api-key", "POST", "/v1/chat/completions", []string{"X-Api-Key", routerToken + "x"}, 401},
		{"non-Bearer scheme", "POST", "/v1/chat/completions", []string{"Authorization", "Basic " + routerToken}, 401},
		{"non-Bearer scheme beats a valid x-api-key", "POST", "/v1/chat/completions", []string{"Authorization", "Token " + routerToken, "X-Api-Key", routerToken}, 401},
		{"unknown path is 401 before 404", "POST", "/v1/secret-admin", nil, 401},
		{"unknown path with token is 404", "POST", "/v1/secret-admin", []string{"Authorization", "Bearer " + routerToken}, 404},
		{"healthz is open", "GET", "/healthz", nil, 200},
		{"health is gated", "GET", "/health", nil, 401},
		{"health with token", "GET", "/health", []string{"X-Api-Key", routerToken}, 200},
		{"models is gated", "GET", "/v1/models", nil, 401},
		{"models with token", "GET", "/v1/models", []string{"Authorization", "Bearer " + routerToken}, 200},
		{"POST healthz is gated", "POST", "/healthz", nil, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, strings.NewReader(chat))
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 {
				e := decodeError(t, body)
				if e.Error.Type != "authentication_error" || e.Error.Message != "invalid or missing API key" {
					t.Errorf("401 body %s", body)
				}
			}
			if strings.Contains(body, routerToken) {
				t.Errorf("response echoes the token: %s", body)
			}
		})
	}
}

// TestTokenNeverLogged runs authenticated, failing and successful requests
// with a logger capturing everything at debug level and checks the token
// and the serve's key appear nowhere.
func TestTokenNeverLogged(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{Mode: fakeserve.ModeStatus500, APIKey: "serve-key-xyz"})
	var logs bytes.Buffer
	h := newHandler(t, oneTier(url, ""), routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": "serve-key-xyz"}},
		slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, hdr := range [][]string{
		{"Authorization", "Bearer " + routerToken},
		{"Authorization", "Bearer " + routerToken + "-wrong"},
		{"X-Api-Key", routerToken},
	} {
		for _, body := range []string{`{"model":"chat"}`, `{"model":"chat","stream":true}`, `{"model":"nope"}`} {
			readAll(t, post(t, t.Context(), srv.URL+"/v1/chat/completions", body, hdr...))
		}
	}
	if logs.Len() == 0 {
		t.Fatal("expected request logs")
	}
	for _, secret := range []string{routerToken, "serve-key-xyz"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain a secret:\n%s", logs.String())
		}
	}
}

func TestModelsAndHealth(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, "max_output_tokens = 2048"), routerOpts{})

	resp, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	want := `{"data":[` +
		`{"id":"chat","object":"model","name":"chat","description":"Configured serving capability","owned_by":"anvil-serving","created":1700000000,"context_window":8192,"max_output_tokens":2048},` +
		`{"id":"llm.primary","object":"model","name":"llm.primary","description":"Configured serving capability","owned_by":"anvil-serving","created":1700000000,"context_window":8192,"max_output_tokens":2048}` +
		`],"object":"list"}` + "\n"
	if body != want {
		t.Errorf("/v1/models\n got %s\nwant %s", body, want)
	}
	if resp.Header.Get("Server") != "anvil" {
		t.Errorf("Server header %q", resp.Header.Get("Server"))
	}

	for _, p := range []string{"/healthz", "/health", "/healthz/"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Status string   `json:"status"`
			Routes []string `json:"routes"`
		}
		if err := json.Unmarshal([]byte(readAll(t, resp)), &h); err != nil || resp.StatusCode != 200 || h.Status != "ok" || len(h.Routes) == 0 {
			t.Errorf("%s: %d %+v %v", p, resp.StatusCode, h, err)
		}
	}

	// Methods: GET on a POST path is 405 with Allow.
	resp, err = http.Get(base + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET chat: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestGlobalLimit: past MaxConcurrency, requests get 503 server_busy at
// once instead of queueing.
func TestGlobalLimit(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Mode: fakeserve.ModeHang})
	base := startRouter(t, oneTier(url, ""), routerOpts{slots: 1})
	go func() {
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"chat"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	for fake.Stats().InFlight == 0 {
		select {
		case <-t.Context().Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`)
	body := readAll(t, resp)
	if resp.StatusCode != 503 || decodeError(t, body).Error.Type != "server_busy" {
		t.Errorf("got %d %s", resp.StatusCode, body)
	}
	// Liveness stays answerable under saturation.
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("healthz under saturation: %d", resp.StatusCode)
	}
}
