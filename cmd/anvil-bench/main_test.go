package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestMain lets the test binary play the tool's child roles: the tool
// re-runs its own executable for the router and tailnet processes, which
// under `go test` is this binary.
func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Args[1:]))
	}
	quietTailnet()
	os.Exit(m.Run())
}

// TestSmoke runs every phase with tiny counts (seconds), so the tool cannot
// rot: the router child, nginx and Caddy when on PATH, the tailnet child
// and the client node, and both outputs. It checks that the numbers exist
// and that nothing failed, not how fast anything was.
func TestSmoke(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run([]string{"--smoke", "--json"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d\n%s", code, errs.String())
	}
	var res Results
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	for _, path := range []string{"router", "tailnet-router", "tailnet-bare"} {
		if l := res.latency(path, "direct", "non-streaming"); l == nil || l.Rounds == 0 || l.PathP50Us <= 0 {
			t.Errorf("%s: no latency rounds: %+v", path, l)
		}
		for _, c := range res.Settings.Concurrency {
			if tp := res.tput(path, c); tp == nil || tp.Requests == 0 || tp.Errors > 0 {
				t.Errorf("%s at concurrency %d: %+v", path, c, tp)
			}
		}
	}
	if l := res.latency("router", "direct", "ttft"); l == nil || l.SelfReportedP50Us == nil {
		t.Errorf("router ttft: no X-Anvil-Overhead-Us: %+v", l)
	}
	for _, path := range []string{"direct", "router"} {
		s := res.stream(path)
		if s == nil || s.Frames != s.Expected || s.FailedStreams > 0 {
			t.Errorf("%s streaming: %+v", path, s)
		}
	}
	// The smoke's router runs the pii guardrails on a stream with an email
	// in every fourth delta: the router's frames come masked, the serve's
	// do not.
	if res.Settings.Guardrails != "pii" || res.Settings.PIIEvery != 4 {
		t.Errorf("smoke settings: guardrails %q, pii-every %d", res.Settings.Guardrails, res.Settings.PIIEvery)
	}
	if s := res.stream("router"); s != nil && s.Masked != s.Expected/4 {
		t.Errorf("router streaming: %d frames masked, want %d", s.Masked, s.Expected/4)
	}
	if s := res.stream("direct"); s != nil && s.Masked != 0 {
		t.Errorf("direct streaming: %d frames masked", s.Masked)
	}
	if s := res.stream("router"); s != nil && (s.RSSPeakMB == nil || *s.RSSPeakMB <= 0 || s.ProxyCPUUsPerFrame == nil) {
		t.Errorf("router streaming: no RSS or CPU: %+v", s)
	}
	if len(res.Procs) == 0 || res.Procs[0].Path != "router" || res.Procs[0].StartupMs <= 0 || res.Procs[0].IdleRSSMB <= 0 {
		t.Errorf("router process: %+v", res.Procs)
	}
	if res.Tailnet == nil || res.Tailnet.NodeUpMs["anvil"] <= 0 {
		t.Errorf("tailnet: %+v", res.Tailnet)
	}
	if len(res.Targets) < 4 {
		t.Errorf("targets: %+v", res.Targets)
	}

	saved := filepath.Join(t.TempDir(), "bench.json")
	if err := os.WriteFile(saved, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if code := run([]string{"--render", saved}, &table, &errs); code != 0 {
		t.Fatalf("--render: exit %d\n%s", code, errs.String())
	}
	for _, want := range []string{"Added latency", "Throughput", "Frontier", "Streaming at scale", "Tailnet", "Targets"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table has no %q section:\n%s", want, table.String())
		}
	}
}

// TestFlags checks the smoke defaults, explicit flags winning over them,
// and refusals.
func TestFlags(t *testing.T) {
	s, err := parseSettings([]string{"--smoke", "--streams", "50", "--concurrency", "2,4"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Streams != 50 || s.Deltas != 8 || len(s.Concurrency) != 2 || s.Concurrency[1] != 4 {
		t.Errorf("smoke with overrides: %+v", s)
	}
	if s.MaxConcurrency < 66 {
		t.Errorf("router limit %d below the runs' concurrency", s.MaxConcurrency)
	}
	for _, bad := range [][]string{
		{"--peers", "envoy"}, {"--concurrency", "0"}, {"--router-env", "NOEQUALS"},
		{"--pprof", "/tmp/x", "--router-bin", "/bin/true"}, {"extra"},
	} {
		if _, err := parseSettings(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// TestGuardrailsFlag: --guardrails names the router's pii stages, and the
// config the router child gets carries exactly that table; anything else
// is refused rather than measured as guardrails off.
func TestGuardrailsFlag(t *testing.T) {
	serves := [nProfiles]string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}
	for _, tc := range []struct {
		name       string
		args       []string
		want       string
		wantStages string // in the router's TOML; "" = no [guardrails]
	}{
		{name: "default off", args: nil, want: ""},
		{name: "explicitly off", args: []string{"--guardrails", ""}, want: ""},
		{name: "output stage", args: []string{"--guardrails", "pii-output"}, want: "pii-output", wantStages: `stages = ["output"]`},
		{name: "both stages", args: []string{"--guardrails", "pii"}, want: "pii", wantStages: `stages = ["input", "output"]`},
		{name: "smoke turns it on", args: []string{"--smoke"}, want: "pii", wantStages: `stages = ["input", "output"]`},
		{name: "explicit wins over smoke", args: []string{"--smoke", "--guardrails", ""}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSettings(tc.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Guardrails != tc.want {
				t.Errorf("guardrails %q, want %q", s.Guardrails, tc.want)
			}
			toml := routerTOML(serves, s.Guardrails)
			if got := strings.Contains(toml, "[guardrails]"); got != (tc.wantStages != "") {
				t.Errorf("[guardrails] in the router config: %v\n%s", got, toml)
			}
			if tc.wantStages != "" && !strings.Contains(toml, tc.wantStages) {
				t.Errorf("router config lacks %s:\n%s", tc.wantStages, toml)
			}
		})
	}
	for _, bad := range [][]string{
		{"--guardrails", "pii-input"}, {"--guardrails", "PII"}, {"--guardrails", "on"},
		{"--pii-every", "-1"}, {"--deltas", "8", "--pii-every", "9"}, {"--phases", "startup"},
	} {
		if _, err := parseSettings(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// TestRouterConfigWithGuardrailsLoads: the table the bench appends is one
// the router accepts (a typo would make every --guardrails run fail at
// start-up, or worse, measure a router without them).
func TestRouterConfigWithGuardrailsLoads(t *testing.T) {
	serves := [nProfiles]string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"}
	for mode, stages := range guardrailModes {
		path := filepath.Join(t.TempDir(), "router.toml")
		if err := os.WriteFile(path, []byte(routerTOML(serves, mode)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("%q: %v", mode, err)
		}
		g := cfg.Guardrails
		if g.Enabled != (len(stages) > 0) {
			t.Errorf("%q: enabled %v", mode, g.Enabled)
		}
		if len(stages) == 0 {
			continue
		}
		if len(g.Providers) != 1 || g.Providers[0].Type != "pii" {
			t.Fatalf("%q: providers %+v", mode, g.Providers)
		}
		p := g.Providers[0]
		if p.Input != slices.Contains(stages, "input") || !p.Output {
			t.Errorf("%q: stages input=%v output=%v", mode, p.Input, p.Output)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{0.5: 5, 0.9: 9, 0.99: 10, 0: 1} {
		if got := pct(v, p); got != want {
			t.Errorf("pct(%v) = %v, want %v", p, got, want)
		}
	}
	if pct(nil, 0.5) != 0 {
		t.Error("empty")
	}
}

func TestFrontier(t *testing.T) {
	f := frontier([]ThroughputResult{
		{Path: "a", Concurrency: 1, RPS: 100, P99Us: 500, Requests: 1},
		{Path: "a", Concurrency: 16, RPS: 900, P99Us: 4000, Requests: 1},
		{Path: "a", Concurrency: 64, RPS: 1000, P99Us: 20000, Requests: 1},
		{Path: "a", Concurrency: 256, RPS: 5000, P99Us: 100, Requests: 1, Errors: 3},
	})
	if len(f) != 1 || f[0].Under1ms != 100 || f[0].Under5ms != 900 || f[0].Under10ms != 900 {
		t.Errorf("frontier: %+v", f)
	}
}

// TestSummarizeStreams: gaps before all streams were open are left out of
// the gap statistics; frames and failures count over the whole phase.
func TestSummarizeStreams(t *testing.T) {
	t0 := time.Now()
	pace := 20 * time.Millisecond
	all := []streamStats{
		{frames: 3, gaps: []float64{150_000, 100}, at: []time.Time{t0.Add(-time.Millisecond), t0.Add(time.Millisecond)}},
		{frames: 2, gaps: []float64{-19_000}, at: []time.Time{t0.Add(time.Millisecond)}, err: errors.New("cut")},
	}
	r := summarizeStreams("x", all, 3, pace, t0)
	if r.Frames != 5 || r.Dropped != 1 || r.FailedStreams != 1 || r.Gaps != 2 {
		t.Errorf("counts: %+v", r)
	}
	if r.Stalled != 0 || r.Bunched != 1 || r.GapMaxUs != 100 {
		t.Errorf("steady gaps: %+v", r)
	}
}
