package tsrouter_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// routerOpts adjust one test router.
type routerOpts struct {
	token   string
	maxBody int64
	slots   int
	env     map[string]string // tier auth_env values and ${ENV} of keys
	// keyStore is the runtime key store path ("" = a temp file).
	keyStore   string
	adminToken string
	// adminAuth is Options.AdminAuth ([admin.auth]).
	adminAuth tsrouter.AdminAuth
	// exhaustionRetryAfter is Options.ExhaustionRetryAfter.
	exhaustionRetryAfter time.Duration
	// bodyGrace, minBodyRate and writeStall are the Options of the same
	// names (slow-caller limits).
	bodyGrace   time.Duration
	minBodyRate int64
	writeStall  time.Duration
	// refuseHostedTools is Options.RefuseHostedTools.
	refuseHostedTools bool
	// usage is Options.Usage (usage accounting).
	usage tsrouter.UsageOptions
}

// newHandler builds the router's handler for a config; the serve keys
// (tier auth_env values) come from o.env. log nil discards.
func newHandler(t testing.TB, toml string, o routerOpts, log *slog.Logger) *tsrouter.Handler {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(k string) string { return o.env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ring *tsrouter.KeyRing
	if len(cfg.APIKeys.Inline) > 0 || cfg.APIKeys.File != "" || cfg.APIKeys.Mode == "blocking" {
		store := o.keyStore
		if store == "" {
			store = filepath.Join(t.TempDir(), "api-keys.json")
		}
		ring, err = tsrouter.NewKeyRing(cfg.APIKeys, store, tsrouter.BackendIDs(cfg.Backends()), func(k string) (string, bool) { v, ok := o.env[k]; return v, ok }, log)
		if err != nil {
			t.Fatalf("keys: %v", err)
		}
	}
	h := tsrouter.New(tsrouter.Options{
		Keys:           ring,
		AdminToken:     policy.NewToken(o.adminToken),
		AdminAuth:      o.adminAuth,
		Backends:       set,
		Token:          policy.NewToken(o.token),
		Logger:         log,
		MaxBodyBytes:   o.maxBody,
		MaxConcurrency: o.slots,

		ExhaustionRetryAfter: o.exhaustionRetryAfter,
		BodyGrace:            o.bodyGrace,
		MinBodyRate:          o.minBodyRate,
		WriteStall:           o.writeStall,
		RefuseHostedTools:    o.refuseHostedTools,
		WebUIPrefix:          cfg.WebUI.Prefix(),
		ConfigView:           cfg.View(),
		Usage:                o.usage,
	})
	t.Cleanup(func() {
		set.CloseIdle()
		h.Close()
	})
	if cfg.Guardrails.Enabled {
		eng, err := h.NewGuardrails(cfg.Guardrails, func(k string) string { return o.env[k] })
		if err != nil {
			t.Fatalf("guardrails: %v", err)
		}
		h.SetGuardrails(eng)
	}
	return h
}

// startRouter serves the router for a config on a real loopback socket and
// returns its base URL.
func startRouter(t testing.TB, toml string, o routerOpts) string {
	t.Helper()
	srv := httptest.NewServer(newHandler(t, toml, o, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// oneTier is a config with a single OpenAI tier at baseURL; extra is
// appended to the tier table.
func oneTier(baseURL, extra string) string {
	return `
[router]
relay_timeout = 2.0

[[router.tiers]]
id = "local-a"
base_url = "` + baseURL + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "SERVE_A_KEY"
model = "served-model"
` + extra + `

[router.model_routes]
chat = "local-a"
llm.primary = "local-a"
`
}

// startFake runs a fake serve on loopback for the test's lifetime.
func startFake(t testing.TB, opts fakeserve.Options) (*fakeserve.Server, string) {
	t.Helper()
	if opts.Model == "" {
		opts.Model = "served-model"
	}
	srv, url, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return srv, url
}

// post sends a JSON body with optional headers and returns the response.
func post(t *testing.T, ctx context.Context, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// sseEvents splits an SSE body into its data payloads.
func sseEvents(body string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, v)
		}
	}
	return out
}

// within fails the test if d exceeds max; used only for "fast, not hung"
// bounds that are orders of magnitude above the expected time.
func within(t *testing.T, what string, d, max time.Duration) {
	t.Helper()
	if d > max {
		t.Errorf("%s took %v, want well under %v", what, d, max)
	}
}
