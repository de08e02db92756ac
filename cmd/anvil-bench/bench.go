package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// Results is everything one run measured (the --json document).
type Results struct {
	Machine    Machine            `json:"machine"`
	Settings   settings           `json:"settings"`
	Procs      []ProcResult       `json:"processes"`
	Skipped    []string           `json:"skipped,omitempty"`
	Latency    []LatencyResult    `json:"latency"`
	Throughput []ThroughputResult `json:"throughput"`
	Frontier   []FrontierResult   `json:"frontier"`
	Streaming  []StreamResult     `json:"streaming"`
	Tailnet    *TailnetResult     `json:"tailnet,omitempty"`
	Profiles   []string           `json:"profiles,omitempty"`
	Targets    []Target           `json:"targets"`
	procs      []*proc            // every process this run started
}

// Machine says where the numbers come from.
type Machine struct {
	Time      string  `json:"time"`
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemGiB    float64 `json:"mem_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	Build     string  `json:"build"` // git revision of the measured tree
	LoadStart string  `json:"loadavg_start"`
	LoadEnd   string  `json:"loadavg_end"`
	// OthersPct is the CPU that processes not started by this run took
	// during it, in percent of one core: a busy machine makes every
	// number noisier.
	OthersPct float64 `json:"others_cpu_pct"`
	NoFile    uint64  `json:"nofile_limit"`
}

func readMachine() Machine {
	m := Machine{Time: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		m.MemGiB = float64(int(kb/1024/1024*10+0.5)) / 10
	}
	m.Build = buildRevision()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// buildRevision names the tree that was measured: the binary's VCS stamp,
// else `git describe` of the working directory (go run does not stamp).
func buildRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "-dirty"
			}
		}
		if len(rev) >= 12 {
			return rev[:12] + dirty
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// startServes runs the three fake serves in this process: zero delay, the
// TTFT profile and the streaming profile.
func startServes(ctx context.Context, s settings) ([nProfiles]string, func(), error) {
	var urls [nProfiles]string
	var stops []func()
	stopAll := func() {
		for _, f := range stops {
			f()
		}
	}
	deltas := make([]string, s.Deltas)
	for i := range deltas {
		deltas[i] = "tok "
		if s.PIIEvery > 0 && i%s.PIIEvery == s.PIIEvery-1 {
			deltas[i] = piiDelta
		}
	}
	for i, o := range [nProfiles]fakeserve.Options{
		{},
		{Deltas: []string{"a", "b"}, Pace: ttftPace},
		{Deltas: deltas, Pace: s.Pace},
	} {
		o.Model = serveModel
		_, u, stop, err := fakeserve.Start(ctx, "127.0.0.1:0", o)
		if err != nil {
			stopAll()
			return urls, nil, err
		}
		urls[i], stops = u, append(stops, stop)
	}
	return urls, stopAll, nil
}

// piiDelta is the streamed delta --pii-every puts in: one email address,
// whole words, so the pii output stage masks it without holding text back.
const piiDelta = "mail ann.lee@example.com "

// bench runs every phase in order. Each phase measures all paths one
// after the other (or interleaved), so they see the same machine state.
func bench(ctx context.Context, s settings, progress func(string, ...any)) (*Results, error) {
	res := &Results{Settings: s, Machine: readMachine()}
	nofile, err := raiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("raising the open-files limit: %w", err)
	}
	res.Machine.NoFile = nofile
	startSnap := takeSnap(nil)
	if need := uint64(4*s.Streams + 1024); nofile < need {
		return nil, fmt.Errorf("open-files limit %d is too low for %d streams (want %d; raise the hard limit)", nofile, s.Streams, need)
	}
	quietTailnet()
	tmp, err := os.MkdirTemp("", "anvil-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	serves, stopServes, err := startServes(ctx, s)
	if err != nil {
		return nil, err
	}
	defer stopServes()
	conns := max(s.MaxConcurrency, s.Streams)
	direct := newPath("direct", serves, [nProfiles]string{serveModel, serveModel, serveModel}, s.Deltas, conns, nil)
	paths := []*path{direct}
	idle := time.Second
	if s.Smoke {
		idle = 100 * time.Millisecond
	}

	if s.has("router") {
		progress("starting the router")
		p, info, err := startRouter(ctx, s, tmp, serves, idle)
		if err != nil {
			return nil, err
		}
		defer p.proc.stop()
		paths, res.Procs, res.procs = append(paths, p), append(res.Procs, info), append(res.procs, p.proc)
	}
	for _, name := range []string{"nginx", "caddy"} {
		if !s.has(name) {
			continue
		}
		bin, err := exec.LookPath(name)
		if err != nil {
			res.Skipped = append(res.Skipped, name+": not on PATH")
			progress("%s not on PATH: skipped", name)
			continue
		}
		progress("starting %s", name)
		p, info, err := startPeer(ctx, name, bin, s, tmp, serves, idle)
		if err != nil {
			return nil, err
		}
		defer p.proc.stop()
		paths, res.Procs, res.procs = append(paths, p), append(res.Procs, info), append(res.procs, p.proc)
	}

	for _, prof := range []profile{pZero, pTTFT} {
		if !s.runs("latency") {
			break
		}
		progress("added latency, %s: %d rounds over %d paths", kindName(prof), s.Pairs, len(paths))
		smp, err := rounds(ctx, paths, prof, s.Pairs)
		if err != nil {
			return nil, err
		}
		for i := 1; i < len(paths); i++ {
			res.Latency = append(res.Latency, smp.paired(paths, i, 0, kindName(prof)))
		}
	}

	for _, c := range s.Concurrency {
		if !s.runs("throughput") {
			break
		}
		for _, p := range paths {
			progress("throughput: %s at concurrency %d", p.name, c)
			var prof func()
			if p.pprof != "" && c == profiledConcurrency(s.Concurrency) {
				prof = fetchProfile(ctx, p.pprof, "profile", s.Duration, filepath.Join(s.pprofDir, fmt.Sprintf("router-cpu-c%d.pprof", c)), res)
			}
			res.Throughput = append(res.Throughput, throughput(ctx, p, c, s.Duration, res.procs))
			if prof != nil {
				prof()
			}
		}
	}

	// Streams start spread over a quarter of their length (at most 1 s), so
	// they do not tick in lock-step yet all run at once for most of it.
	ramp := min(time.Second, time.Duration(s.Deltas)*s.Pace/4)
	var directStream *StreamResult
	for _, p := range paths {
		if !s.runs("streaming") {
			break
		}
		progress("streaming: %s, %d streams x %d deltas at %v", p.name, s.Streams, s.Deltas, s.Pace)
		r, err := streamPhase(ctx, p, s, ramp, res)
		if err != nil {
			return nil, err
		}
		if directStream == nil {
			directStream = &r
		} else {
			a50, a99 := r.GapP50Us-directStream.GapP50Us, r.GapP99Us-directStream.GapP99Us
			r.AddedP50Us, r.AddedP99Us = &a50, &a99
		}
		res.Streaming = append(res.Streaming, r)
	}

	if s.has("tailnet") {
		if err := tailnetPhase(ctx, s, tmp, serves, direct, res, progress); err != nil {
			return nil, fmt.Errorf("tailnet: %w", err)
		}
	}
	res.Frontier = frontier(res.Throughput)
	res.Targets = evaluate(res)
	res.Machine.LoadEnd = loadavg()
	total, _ := use(startSnap, takeSnap(nil), nil)
	res.Machine.OthersPct = total.OthersPct
	for _, p := range res.procs {
		res.Machine.OthersPct = max(0, res.Machine.OthersPct-100*p.cpu().Seconds()/time.Since(startSnap.wall).Seconds())
	}
	return res, nil
}

// streamPhase runs the streams through one path, reading the proxy's RSS
// before, at peak (VmHWM since a reset, and sampled) and after --settle.
func streamPhase(ctx context.Context, p *path, s settings, ramp time.Duration, res *Results) (StreamResult, error) {
	var stopSampler func() float64
	var before float64
	hwm := false
	if p.proc != nil {
		before = p.proc.rssMB()
		hwm = p.proc.resetPeak()
		stopSampler = rssSampler(p.proc, 20*time.Millisecond)
	}
	var profDone []func()
	if p.pprof != "" {
		span := ramp + time.Duration(s.Deltas)*s.Pace
		profDone = append(profDone,
			fetchProfile(ctx, p.pprof, "profile", span, filepath.Join(s.pprofDir, "router-cpu-streams.pprof"), res),
			fetchProfileAt(ctx, p.pprof, "heap", ramp+span/4, filepath.Join(s.pprofDir, "router-heap-streams.pprof"), res),
			fetchProfileAt(ctx, p.pprof, "heap?debug=1", ramp+span/4, filepath.Join(s.pprofDir, "router-memstats-streams.txt"), res),
			fetchProfileAt(ctx, p.pprof, "goroutine", ramp+span/4, filepath.Join(s.pprofDir, "router-goroutines-streams.pprof"), res))
	}
	a := takeSnap(res.procs)
	all, steady := streams(ctx, p, s.Streams, s.Deltas, s.Pace, ramp)
	b := takeSnap(res.procs)
	for _, f := range profDone {
		f()
	}
	if err := ctx.Err(); err != nil {
		return StreamResult{}, err
	}
	r := summarizeStreams(p.name, all, s.Deltas, s.Pace, steady)
	var proxyCPU time.Duration
	r.CPU, proxyCPU = use(a, b, p.proc)
	if p.proc != nil && r.Frames > 0 {
		v := us(proxyCPU) / float64(r.Frames)
		r.ProxyCPUUsPerFrame = &v
	}
	if p.proc != nil {
		peak := stopSampler()
		if hwm {
			peak = max(peak, p.proc.peakMB())
		}
		time.Sleep(s.Settle)
		after := p.proc.rssMB()
		r.RSSBeforeMB, r.RSSPeakMB, r.RSSAfterMB = &before, &peak, &after
	}
	return r, nil
}

// profiledConcurrency is the sweep level the CPU profile is taken at: 64,
// or the level nearest to it.
func profiledConcurrency(levels []int) int {
	best := levels[0]
	for _, c := range levels {
		if abs(c-64) < abs(best-64) {
			best = c
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// fetchProfile starts a pprof download (CPU profile for d, rounded up to
// whole seconds) in the background; the returned func waits for it.
func fetchProfile(ctx context.Context, addr, kind string, d time.Duration, file string, res *Results) func() {
	secs := int((d + time.Second - 1) / time.Second)
	url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, secs)
	return download(ctx, url, 0, file, res)
}

// fetchProfileAt takes a snapshot profile (heap, goroutine) after delay.
func fetchProfileAt(ctx context.Context, addr, kind string, delay time.Duration, file string, res *Results) func() {
	return download(ctx, "http://"+addr+"/debug/pprof/"+kind, delay, file, res)
}

func download(ctx context.Context, url string, delay time.Duration, file string, res *Results) func() {
	done := make(chan bool, 1)
	go func() {
		done <- func() bool {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return false
			}
			if os.MkdirAll(filepath.Dir(file), 0o755) != nil {
				return false
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			f, err := os.Create(file)
			if err != nil {
				return false
			}
			_, err = io.Copy(f, resp.Body)
			return f.Close() == nil && err == nil && resp.StatusCode == http.StatusOK
		}()
	}()
	return func() {
		if <-done {
			res.Profiles = append(res.Profiles, file)
		}
	}
}
