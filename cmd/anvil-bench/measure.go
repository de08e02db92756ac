package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// profile selects which fake serve (and which request body) a request uses.
type profile int

const (
	pZero   profile = iota // zero delay, non-streaming: latency and throughput
	pTTFT                  // two deltas 1 ms apart, streaming: time to first token
	pStream                // the streaming profile: --deltas at --pace
	nProfiles
)

// ttftPace separates the two deltas of the TTFT serve, so the first content
// delta travels alone the way a real serve's first token does.
const ttftPace = time.Millisecond

// stallOver is how late a frame must be (beyond the pace) to count as
// stalled: five 20 ms paces.
const stallOver = 100 * time.Millisecond

// path is one way to reach the serves: direct, or through a proxy.
type path struct {
	name   string
	urls   [nProfiles]string // chat completions URL per profile
	bodies [nProfiles][]byte
	hc     *http.Client
	proc   *proc  // the proxy's process (RSS), nil for direct
	pprof  string // router child's pprof address, "" if none
}

const serveModel = "bench-model"

// requestBody is the same small chat request for every path; only the
// model (an alias for the router, the served model otherwise) differs.
func requestBody(model string, prof profile, deltas int) []byte {
	maxTokens, stream := 64, ""
	switch prof {
	case pTTFT:
		stream = `,"stream":true`
	case pStream:
		maxTokens, stream = deltas, `,"stream":true`
	}
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}],"max_tokens":%d,"temperature":0.2%s}`, model, maxTokens, stream)
}

func newPath(name string, bases [nProfiles]string, models [nProfiles]string, deltas, conns int, dial func(context.Context, string, string) (net.Conn, error)) *path {
	p := &path{name: name, hc: newClient(conns, dial)}
	for i := range nProfiles {
		p.urls[i] = bases[i] + "/v1/chat/completions"
		p.bodies[i] = requestBody(models[i], i, deltas)
	}
	return p
}

// newClient is a keep-alive client that never pools fewer connections than
// the highest concurrency it will see.
func newClient(conns int, dial func(context.Context, string, string) (net.Conn, error)) *http.Client {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         dial,
		DisableCompression:  true,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
	}}
}

func (p *path) post(ctx context.Context, prof profile) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.urls[prof], bytes.NewReader(p.bodies[prof]))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: status %d", p.name, resp.StatusCode)
	}
	return resp, nil
}

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// isContent reports whether an SSE line carries a non-empty content delta.
func isContent(line []byte) bool {
	i := bytes.Index(line, []byte(`"content":"`))
	return i >= 0 && i+11 < len(line) && line[i+11] != '"'
}

// do sends one request and returns how long it took: to the end of the
// body for pZero, to the first content delta for pTTFT (the rest is read
// and discarded). overhead is the router's X-Anvil-Overhead-Us, or -1.
func (p *path) do(ctx context.Context, prof profile) (d time.Duration, overhead int, err error) {
	start := time.Now()
	resp, err := p.post(ctx, prof)
	if err != nil {
		return 0, -1, err
	}
	defer resp.Body.Close()
	overhead = -1
	if v := resp.Header.Get("X-Anvil-Overhead-Us"); v != "" {
		overhead, _ = strconv.Atoi(v)
	}
	if prof == pZero {
		_, err = io.Copy(io.Discard, resp.Body)
		return time.Since(start), overhead, err
	}
	rd := readers.Get().(*bufio.Reader)
	defer readers.Put(rd)
	rd.Reset(resp.Body)
	for d == 0 {
		line, err := rd.ReadSlice('\n')
		if isContent(line) {
			d = time.Since(start)
		}
		if err != nil {
			return 0, overhead, fmt.Errorf("%s: stream ended before the first delta: %v", p.name, err)
		}
	}
	_, err = io.Copy(io.Discard, rd)
	return d, overhead, err
}

// samples are one measurement per round for each path (rounds where any
// request failed are dropped).
type samples struct {
	t        [][]time.Duration // [path][round]
	overhead [][]float64       // [path][round] self-reported µs, where sent
	errors   int
}

// rounds sends one request per path per round, in a freshly shuffled order
// each round, at concurrency 1: the paired, interleaved method. A few
// warm-up rounds are discarded.
func rounds(ctx context.Context, paths []*path, prof profile, n int) (samples, error) {
	s := samples{t: make([][]time.Duration, len(paths)), overhead: make([][]float64, len(paths))}
	warm := max(3, min(n/20, 100))
	round := make([]time.Duration, len(paths))
	over := make([]int, len(paths))
	for r := -warm; r < n; r++ {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		failed := false
		for _, i := range rand.Perm(len(paths)) {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			d, o, err := paths[i].do(rctx, prof)
			cancel()
			if err != nil {
				failed = true
				s.errors++
				if s.errors > 3+n/10 {
					return s, fmt.Errorf("too many failed requests: %w", err)
				}
				time.Sleep(time.Millisecond)
				break
			}
			round[i], over[i] = d, o
		}
		if failed || r < 0 {
			continue
		}
		for i := range paths {
			s.t[i] = append(s.t[i], round[i])
			if over[i] >= 0 {
				s.overhead[i] = append(s.overhead[i], float64(over[i]))
			}
		}
	}
	return s, nil
}

// LatencyResult is the paired difference between a path and its base.
type LatencyResult struct {
	Path       string  `json:"path"`
	Base       string  `json:"base"`
	Kind       string  `json:"kind"` // non-streaming or ttft
	Rounds     int     `json:"rounds"`
	BaseP50Us  float64 `json:"base_p50_us"`
	PathP50Us  float64 `json:"path_p50_us"`
	AddedP50Us float64 `json:"added_p50_us"`
	AddedP90Us float64 `json:"added_p90_us"`
	AddedP99Us float64 `json:"added_p99_us"`
	// SelfReportedP50Us is the router's own X-Anvil-Overhead-Us (time
	// before the response starts, minus waiting for the serve).
	SelfReportedP50Us *float64 `json:"self_reported_p50_us,omitempty"`
	Errors            int      `json:"errors"`
}

func (s samples) paired(paths []*path, i, base int, kind string) LatencyResult {
	diffs := make([]float64, len(s.t[i]))
	for r := range diffs {
		diffs[r] = us(s.t[i][r] - s.t[base][r])
	}
	slices.Sort(diffs)
	res := LatencyResult{
		Path: paths[i].name, Base: paths[base].name, Kind: kind, Rounds: len(diffs),
		BaseP50Us: pctDur(s.t[base], 0.5), PathP50Us: pctDur(s.t[i], 0.5),
		AddedP50Us: pct(diffs, 0.5), AddedP90Us: pct(diffs, 0.9), AddedP99Us: pct(diffs, 0.99),
		Errors: s.errors,
	}
	if o := slices.Sorted(slices.Values(s.overhead[i])); len(o) > 0 {
		v := pct(o, 0.5)
		res.SelfReportedP50Us = &v
	}
	return res
}

// ThroughputResult is one closed-loop point of the sweep.
type ThroughputResult struct {
	Path        string  `json:"path"`
	Concurrency int     `json:"concurrency"`
	RPS         float64 `json:"rps"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	// ProxyCPUUsPerReq is the proxy process's CPU time per request.
	ProxyCPUUsPerReq *float64 `json:"proxy_cpu_us_per_req,omitempty"`
	CPU              CPUUse   `json:"cpu"`
}

// throughput runs c workers that each send the zero-delay request back to
// back for a warm-up (dur/5) and then dur; only requests that start and
// end inside the measuring window count. CPU is read at both ends of the
// window for the path's proxy, this process and everything else (procs are
// all the processes this tool runs).
func throughput(ctx context.Context, p *path, c int, dur time.Duration, procs []*proc) ThroughputResult {
	from := time.Now().Add(dur / 5)
	end := from.Add(dur)
	snaps := make(chan cpuSnap, 2)
	go func() {
		time.Sleep(time.Until(from))
		snaps <- takeSnap(procs)
		time.Sleep(time.Until(end))
		snaps <- takeSnap(procs)
	}()
	lats := make([][]float64, c)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				d, _, err := p.do(rctx, pZero)
				cancel()
				if err != nil {
					errs.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				if !t0.Before(from) && t0.Add(d).Before(end) {
					lats[w] = append(lats[w], us(d))
				}
			}
		})
	}
	wg.Wait()
	all := slices.Concat(lats...)
	slices.Sort(all)
	r := ThroughputResult{
		Path: p.name, Concurrency: c, RPS: float64(len(all)) / dur.Seconds(),
		P50Us: pct(all, 0.5), P99Us: pct(all, 0.99), Requests: len(all), Errors: int(errs.Load()),
	}
	a, b := <-snaps, <-snaps
	var proxyCPU time.Duration
	r.CPU, proxyCPU = use(a, b, p.proc)
	if p.proc != nil && len(all) > 0 {
		v := us(proxyCPU) / float64(len(all))
		r.ProxyCPUUsPerReq = &v
	}
	return r
}

// StreamResult is the streaming-at-scale phase for one path.
type StreamResult struct {
	Path     string `json:"path"`
	Streams  int    `json:"streams"`
	Deltas   int    `json:"deltas"`
	Expected int    `json:"frames_expected"`
	Frames   int    `json:"frames"`
	// Gap* are the gaps between consecutive content frames minus the
	// serve's pace, as the client saw them, once all streams were open
	// (Gaps of them).
	Gaps     int     `json:"gaps"`
	GapP50Us float64 `json:"gap_over_pace_p50_us"`
	GapP99Us float64 `json:"gap_over_pace_p99_us"`
	GapMaxUs float64 `json:"gap_over_pace_max_us"`
	// Added* are the path's gap percentiles minus direct's (difference of
	// percentiles: frames of different streams cannot be paired).
	AddedP50Us *float64 `json:"added_gap_p50_us,omitempty"`
	AddedP99Us *float64 `json:"added_gap_p99_us,omitempty"`
	TTFTP50Ms  float64  `json:"ttft_p50_ms"`
	TTFTP99Ms  float64  `json:"ttft_p99_ms"`
	// Stalled frames came more than stallOver after the pace; bunched ones
	// less than a quarter of the pace after the previous (a sign of
	// buffering); dropped = expected - received.
	Stalled int `json:"stalled"`
	// Masked frames carried a guardrail placeholder (--pii-every).
	Masked        int      `json:"masked,omitempty"`
	Bunched       int      `json:"bunched"`
	Dropped       int      `json:"dropped"`
	FailedStreams int      `json:"failed_streams"`
	RSSBeforeMB   *float64 `json:"rss_before_mb,omitempty"`
	RSSPeakMB     *float64 `json:"rss_peak_mb,omitempty"`
	RSSAfterMB    *float64 `json:"rss_after_mb,omitempty"`
	FirstError    string   `json:"first_error,omitempty"`
	// ProxyCPUUsPerFrame is the proxy's CPU time per content frame (the
	// whole phase, stream set-up included).
	ProxyCPUUsPerFrame *float64 `json:"proxy_cpu_us_per_frame,omitempty"`
	CPU                CPUUse   `json:"cpu"`
}

type streamStats struct {
	ttft   time.Duration
	gaps   []float64   // µs over pace
	at     []time.Time // arrival of the frame that ended each gap
	frames int
	masked int
	err    error
}

// streamOne reads one stream and times every content frame.
func (p *path) streamOne(ctx context.Context, pace time.Duration, deltas int) streamStats {
	st := streamStats{gaps: make([]float64, 0, deltas), at: make([]time.Time, 0, deltas)}
	start := time.Now()
	resp, err := p.post(ctx, pStream)
	if err != nil {
		st.err = err
		return st
	}
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 2048)
	var last time.Time
	done := false
	for {
		line, err := rd.ReadSlice('\n')
		if isContent(line) {
			now := time.Now()
			if last.IsZero() {
				st.ttft = now.Sub(start)
			} else {
				st.gaps = append(st.gaps, us(now.Sub(last)-pace))
				st.at = append(st.at, now)
			}
			last = now
			st.frames++
			if bytes.Contains(line, []byte("REDACTED:")) {
				st.masked++
			}
		} else if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			done = true
		}
		if err != nil {
			if !errors.Is(err, io.EOF) || !done {
				st.err = fmt.Errorf("%s: stream broke after %d frames: %v", p.name, st.frames, err)
			}
			return st
		}
	}
}

// streams opens n streams spread over ramp (so they do not tick in
// lock-step) and waits for all of them. It returns when the last stream
// was requested: from then on all n are open.
func streams(ctx context.Context, p *path, n, deltas int, pace, ramp time.Duration) ([]streamStats, time.Time) {
	out := make([]streamStats, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	limit := ramp + time.Duration(deltas)*pace*4 + 30*time.Second
	for i := range n {
		wg.Go(func() {
			if d := time.Until(t0.Add(ramp * time.Duration(i) / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
			sctx, cancel := context.WithTimeout(ctx, limit)
			defer cancel()
			out[i] = p.streamOne(sctx, pace, deltas)
		})
	}
	wg.Wait()
	return out, t0.Add(ramp)
}

// summarizeStreams counts frames and failures over the whole phase, and
// judges gaps (percentiles, stalled, bunched) from the moment all streams
// are open (steady): the set-up burst shows in TTFT instead.
func summarizeStreams(name string, all []streamStats, deltas int, pace time.Duration, steady time.Time) StreamResult {
	r := StreamResult{Path: name, Streams: len(all), Deltas: deltas, Expected: len(all) * deltas}
	var gaps, ttfts []float64
	for _, s := range all {
		r.Frames += s.frames
		r.Masked += s.masked
		if s.frames > 0 {
			ttfts = append(ttfts, float64(s.ttft.Microseconds())/1000)
		}
		if s.err != nil {
			r.FailedStreams++
			if r.FirstError == "" {
				r.FirstError = s.err.Error()
			}
		}
		for i, g := range s.gaps {
			if s.at[i].Before(steady) {
				continue
			}
			gaps = append(gaps, g)
			switch {
			case g > us(stallOver):
				r.Stalled++
			case g < -us(pace)*3/4:
				r.Bunched++
			}
		}
	}
	r.Dropped = r.Expected - r.Frames
	r.Gaps = len(gaps)
	slices.Sort(gaps)
	slices.Sort(ttfts)
	r.GapP50Us, r.GapP99Us = pct(gaps, 0.5), pct(gaps, 0.99)
	if len(gaps) > 0 {
		r.GapMaxUs = gaps[len(gaps)-1]
	}
	r.TTFTP50Ms, r.TTFTP99Ms = pct(ttfts, 0.5), pct(ttfts, 0.99)
	return r
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// pct is the nearest-rank percentile of sorted values (0 when empty).
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func pctDur(ds []time.Duration, p float64) float64 {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = us(d)
	}
	slices.Sort(v)
	return pct(v, p)
}
