// Command anvil-bench measures what the router adds on top of the model
// serve, side by side with nginx and Caddy as plain streaming-safe reverse
// proxies, on one machine, with every sample paired against the direct
// path so that the machine's noise cancels out:
//
//   - added latency at concurrency 1: paired, interleaved samples (direct
//     vs each path, in a shuffled order every round), percentiles of the
//     per-round difference, non-streaming and time to first token;
//   - throughput frontier: closed-loop req/s at each concurrency, p50/p99,
//     and the highest rate whose p99 stays under 1, 5 and 10 ms;
//   - streaming at scale: N concurrent streams of D deltas at a fixed pace:
//     gap between content frames over the pace (p50/p99, and added over
//     direct), stalled, dropped and bunched frames, proxy RSS peak and after;
//   - start-up time to the first served request, and idle RSS;
//   - with --guardrails, the same with the router's pii guardrails on (run
//     it once without and once with, and compare the two tables);
//   - the tailnet path: the router's node and a bare tsnet reverse proxy
//     node (both in one child process) reached from a client node in this
//     process, through an in-process control server, DERP and STUN on
//     127.0.0.1, measured the same way.
//
// Everything listens on 127.0.0.1 only. The fake serves and the load
// generator run in this process; every proxy runs in its own process so its
// memory can be read from /proc and its CPU is not shared with the load
// generator's garbage collector. The router process is this binary re-run
// as a child that builds the handler exactly like `anvil-router serve
// --dev-listen` (or, with --router-bin, the real anvil-router binary).
//
//	go run ./cmd/anvil-bench                      # full run, table
//	go run ./cmd/anvil-bench --json > bench.json  # for machines
//	go run ./cmd/anvil-bench --smoke              # seconds, for CI
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Args[1:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// settings are the knobs of one run (flags).
type settings struct {
	Duration       time.Duration `json:"duration_ns"`
	Concurrency    []int         `json:"concurrency"`
	Peers          []string      `json:"peers"`
	Pairs          int           `json:"pairs"`
	Streams        int           `json:"streams"`
	Deltas         int           `json:"deltas"`
	Pace           time.Duration `json:"pace_ns"`
	Settle         time.Duration `json:"settle_ns"`
	RouterBin      string        `json:"router_bin,omitempty"`
	MaxConcurrency int           `json:"router_max_concurrency"`
	RouterEnv      []string      `json:"router_env,omitempty"`
	Smoke          bool          `json:"smoke"`
	Phases         []string      `json:"phases"`
	// Guardrails is the [guardrails] table the router runs with: "" none,
	// "pii-output" a pii provider on the output stage, "pii" on both.
	Guardrails string `json:"guardrails,omitempty"`
	// PIIEvery puts an email address in every PIIEvery-th streamed delta
	// (0: none), so that the output stage masks rather than only scans.
	PIIEvery int `json:"pii_every,omitempty"`
	pprofDir string
	jsonOut  bool
	render   string
}

var knownPeers = []string{"router", "nginx", "caddy", "tailnet"}

// knownPhases are the measurements --phases selects from (start-up and
// idle RSS are always read: every path is started).
var knownPhases = []string{"latency", "throughput", "streaming"}

// guardrailModes are the values of --guardrails: the stages of the
// router's pii provider.
var guardrailModes = map[string][]string{"": nil, "pii-output": {"output"}, "pii": {"input", "output"}}

func parseSettings(args []string, stderr io.Writer) (settings, error) {
	fs := flag.NewFlagSet("anvil-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	conc := fs.String("concurrency", "1,16,64,256", "closed-loop concurrency levels of the throughput sweep")
	peers := fs.String("peers", strings.Join(knownPeers, ","), "paths to measure besides direct: router, nginx, caddy, tailnet (nginx/caddy are skipped when not on PATH)")
	fs.DurationVar(&s.Duration, "duration", 5*time.Second, "measuring time per throughput point (after a warm-up of a fifth of it)")
	fs.IntVar(&s.Pairs, "pairs", 2000, "paired rounds for added latency (each path once per round)")
	fs.IntVar(&s.Streams, "streams", 1000, "concurrent streams in the streaming-at-scale phase")
	fs.IntVar(&s.Deltas, "deltas", 64, "content deltas per stream")
	fs.DurationVar(&s.Pace, "pace", 20*time.Millisecond, "the serve's delay between deltas")
	fs.DurationVar(&s.Settle, "settle", 5*time.Second, "idle time after the streams before reading 'RSS after'")
	fs.StringVar(&s.RouterBin, "router-bin", "", "run this anvil-router binary (serve --dev-listen) instead of the built-in router child")
	fs.IntVar(&s.MaxConcurrency, "router-max-concurrency", 4096, "the router's in-flight limit for the runs (its default, 64, would answer 503 at higher concurrency)")
	routerEnv := fs.String("router-env", "", "extra environment for the router process, comma-separated KEY=VALUE (e.g. GOMAXPROCS=1,GOGC=200)")
	fs.StringVar(&s.pprofDir, "pprof", "", "write CPU and heap profiles of the router under load to this directory (built-in child only)")
	fs.StringVar(&s.render, "render", "", "print the table of a saved --json output and exit (measures nothing)")
	fs.BoolVar(&s.jsonOut, "json", false, "print the results as JSON on stdout (progress stays on stderr)")
	phases := fs.String("phases", strings.Join(knownPhases, ","), "measurements to run: latency (concurrency 1), throughput, streaming")
	fs.StringVar(&s.Guardrails, "guardrails", "", `the router's guardrails: "" none, "pii-output" a pii provider on the output stage, "pii" on input and output`)
	fs.IntVar(&s.PIIEvery, "pii-every", 0, "put an email address in every Nth streamed delta so the pii output stage masks (0: no PII, it only scans)")
	fs.BoolVar(&s.Smoke, "smoke", false, "seconds, tiny counts, guardrails pii with PII in the stream: checks that every phase still runs (explicit flags still win)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if s.Smoke {
		smoke := map[string]func(){
			"duration":    func() { s.Duration = 300 * time.Millisecond },
			"concurrency": func() { *conc = "1,8" },
			"pairs":       func() { s.Pairs = 40 },
			"streams":     func() { s.Streams = 20 },
			"deltas":      func() { s.Deltas = 8 },
			"pace":        func() { s.Pace = 10 * time.Millisecond },
			"settle":      func() { s.Settle = 100 * time.Millisecond },
			// The smoke runs the router with guardrails on both stages and
			// PII in the stream, so the bench's [guardrails] table and the
			// masking path cannot rot either.
			"guardrails": func() { s.Guardrails = "pii" },
			"pii-every":  func() { s.PIIEvery = 4 },
		}
		for name, apply := range smoke {
			if !set[name] {
				apply()
			}
		}
	}
	for _, f := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return s, fmt.Errorf("--concurrency: bad level %q (1..4096)", f)
		}
		s.Concurrency = append(s.Concurrency, n)
	}
	for _, kv := range strings.Split(*routerEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return s, fmt.Errorf("--router-env: %q is not KEY=VALUE", kv)
		}
		s.RouterEnv = append(s.RouterEnv, kv)
	}
	for _, p := range strings.Split(*peers, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(knownPeers, p) {
			return s, fmt.Errorf("--peers: unknown %q (want some of %s)", p, strings.Join(knownPeers, ","))
		}
		s.Peers = append(s.Peers, p)
	}
	for _, p := range strings.Split(*phases, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(knownPhases, p) {
			return s, fmt.Errorf("--phases: unknown %q (want some of %s)", p, strings.Join(knownPhases, ","))
		}
		s.Phases = append(s.Phases, p)
	}
	if _, ok := guardrailModes[s.Guardrails]; !ok {
		return s, fmt.Errorf(`--guardrails: unknown %q (want "", "pii-output" or "pii")`, s.Guardrails)
	}
	switch {
	case s.PIIEvery < 0 || s.PIIEvery > s.Deltas:
		return s, errors.New("--pii-every: between 0 and --deltas")
	case s.Duration < 50*time.Millisecond || s.Duration > 10*time.Minute:
		return s, errors.New("--duration: between 50ms and 10m")
	case s.Pairs < 1 || s.Pairs > 1_000_000:
		return s, errors.New("--pairs: between 1 and 1000000")
	case s.Streams < 1 || s.Streams > 8000:
		return s, errors.New("--streams: between 1 and 8000 (file descriptors)")
	case s.Deltas < 2 || s.Deltas > 10000:
		return s, errors.New("--deltas: between 2 and 10000")
	case s.Pace < time.Millisecond || s.Pace > time.Second:
		return s, errors.New("--pace: between 1ms and 1s")
	case s.pprofDir != "" && s.RouterBin != "":
		return s, errors.New("--pprof needs the built-in router child (no --router-bin)")
	}
	need := max(s.Streams, slices.Max(s.Concurrency)) + 16
	if s.MaxConcurrency < need {
		s.MaxConcurrency = need
	}
	return s, nil
}

func (s settings) has(peer string) bool { return slices.Contains(s.Peers, peer) }

func (s settings) runs(phase string) bool { return slices.Contains(s.Phases, phase) }

func run(args []string, stdout, stderr io.Writer) int {
	s, err := parseSettings(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "anvil-bench:", err)
		return 2
	}
	if s.render != "" {
		b, err := os.ReadFile(s.render)
		var res Results
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		if err != nil {
			fmt.Fprintln(stderr, "anvil-bench: --render:", err)
			return 1
		}
		writeTable(stdout, &res)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "anvil-bench: "+format+"\n", a...)
	}
	res, err := bench(ctx, s, progress)
	if err != nil {
		fmt.Fprintln(stderr, "anvil-bench:", err)
		return 1
	}
	if s.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(stderr, "anvil-bench:", err)
			return 1
		}
		return 0
	}
	writeTable(stdout, res)
	return 0
}

// raiseFileLimit lifts the soft open-files limit to the hard one: a
// thousand streams need about two thousand sockets in this process and in
// each proxy. Setting it explicitly (rather than relying on the Go
// runtime's own raise) makes child processes inherit it.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}
