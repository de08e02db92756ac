package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// FrontierResult is, per path, the highest req/s of the sweep whose p99
// stayed under each bound (0: no point did).
type FrontierResult struct {
	Path      string  `json:"path"`
	Under1ms  float64 `json:"rps_p99_under_1ms"`
	Under5ms  float64 `json:"rps_p99_under_5ms"`
	Under10ms float64 `json:"rps_p99_under_10ms"`
}

func frontier(tp []ThroughputResult) []FrontierResult {
	var out []FrontierResult
	idx := map[string]int{}
	for _, t := range tp {
		i, ok := idx[t.Path]
		if !ok {
			i = len(out)
			idx[t.Path] = i
			out = append(out, FrontierResult{Path: t.Path})
		}
		if t.Errors > 0 || t.Requests == 0 {
			continue
		}
		f := &out[i]
		for _, b := range []struct {
			us  float64
			dst *float64
		}{{1000, &f.Under1ms}, {5000, &f.Under5ms}, {10000, &f.Under10ms}} {
			if t.P99Us < b.us && t.RPS > *b.dst {
				*b.dst = t.RPS
			}
		}
	}
	return out
}

// Target is one goal of issue 8, judged on this run.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func (r *Results) latency(path, base, kind string) *LatencyResult {
	for i := range r.Latency {
		if l := &r.Latency[i]; l.Path == path && l.Base == base && l.Kind == kind {
			return l
		}
	}
	return nil
}

func (r *Results) tput(path string, c int) *ThroughputResult {
	for i := range r.Throughput {
		if t := &r.Throughput[i]; t.Path == path && t.Concurrency == c {
			return t
		}
	}
	return nil
}

func (r *Results) stream(path string) *StreamResult {
	for i := range r.Streaming {
		if s := &r.Streaming[i]; s.Path == path {
			return s
		}
	}
	return nil
}

// evaluate judges the targets where this run has the numbers.
func evaluate(r *Results) []Target {
	var out []Target
	if l := r.latency("router", "direct", "non-streaming"); l != nil {
		want, met := "< 100 µs", l.AddedP50Us < 100
		got := fmt.Sprintf("%.0f µs", l.AddedP50Us)
		if n := r.latency("nginx", "direct", "non-streaming"); n != nil {
			want += fmt.Sprintf(" and <= nginx (%.0f µs)", n.AddedP50Us)
			met = met && l.AddedP50Us <= n.AddedP50Us
		}
		out = append(out, Target{"added latency p50, concurrency 1", want, got, met})
	}
	if t := r.tput("router", 64); t != nil {
		var wants []string
		met := true
		if n := r.tput("nginx", 64); n != nil {
			wants = append(wants, fmt.Sprintf(">= 0.9 x nginx (%.0f)", 0.9*n.RPS))
			met = met && t.RPS >= 0.9*n.RPS
		}
		if c := r.tput("caddy", 64); c != nil {
			wants = append(wants, fmt.Sprintf(">= caddy (%.0f)", c.RPS))
			met = met && t.RPS >= c.RPS
		}
		if len(wants) > 0 {
			out = append(out, Target{"throughput at concurrency 64 (req/s)", strings.Join(wants, ", "), fmt.Sprintf("%.0f", t.RPS), met && t.Errors == 0})
		}
	}
	if s := r.stream("router"); s != nil {
		n := r.Settings.Streams
		if s.AddedP99Us != nil {
			out = append(out, Target{fmt.Sprintf("streaming, %d streams: added p99 inter-frame gap", n), "< 2 ms", fmt.Sprintf("%.2f ms", *s.AddedP99Us/1000), *s.AddedP99Us < 2000})
		}
		out = append(out, Target{"streaming: stalled or dropped frames", "0", fmt.Sprintf("%d stalled, %d dropped", s.Stalled, s.Dropped), s.Stalled == 0 && s.Dropped == 0 && s.FailedStreams == 0})
		if s.RSSPeakMB != nil {
			out = append(out, Target{"streaming: router RSS at peak", "< 150 MB", fmt.Sprintf("%.0f MB", *s.RSSPeakMB), *s.RSSPeakMB < 150})
		}
	}
	if t := r.Tailnet; t != nil {
		got := fmt.Sprintf("%+.1f%%", t.AddedOverBarePct)
		if !t.AllDirect {
			got += " (not comparable: " + t.Conn + ")"
		}
		out = append(out, Target{"tailnet: router over a bare tsnet proxy (p50, paired)", "<= 10%", got, t.AddedOverBarePct <= 10 && t.AllDirect})
	}
	return out
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func optMB(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}

func optUs(v *float64) string {
	if v == nil {
		return "-"
	}
	return f0(*v)
}

func optDec(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}

func orDash(v float64) string {
	if v == 0 {
		return "-"
	}
	return f0(v)
}

// writeTable prints the results for people.
func writeTable(w io.Writer, r *Results) {
	m, s := r.Machine, r.Settings
	fmt.Fprintf(w, "anvil-bench  %s\nmachine: %d CPUs (%s), %.1f GiB, Linux %s, %s; load average %s at start, %s at end\n",
		m.Time, m.CPUs, m.CPUModel, m.MemGiB, m.Kernel, m.Go, m.LoadStart, m.LoadEnd)
	if m.Build != "" {
		fmt.Fprintf(w, "tree: %s\n", m.Build)
	}
	fmt.Fprintf(w, "other processes used %.0f%% of one core during the run (of %d00%%)\n", m.OthersPct, m.CPUs)
	fmt.Fprintf(w, "settings: %v per throughput point, concurrency %v, %d latency rounds, %d streams x %d deltas at %v, smoke=%v\n",
		s.Duration, s.Concurrency, s.Pairs, s.Streams, s.Deltas, s.Pace, s.Smoke)
	if s.Guardrails != "" || s.PIIEvery > 0 || (len(s.Phases) > 0 && len(s.Phases) < len(knownPhases)) {
		fmt.Fprintf(w, "guardrails: %q, an email in every %dth streamed delta (0: none); phases %v\n", s.Guardrails, s.PIIEvery, s.Phases)
	}
	for _, sk := range r.Skipped {
		fmt.Fprintf(w, "skipped: %s\n", sk)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	section := func(title, header string) {
		tw.Flush()
		fmt.Fprintf(w, "\n%s\n", title)
		fmt.Fprintln(tw, header)
	}

	section("Processes (start-up = process start to first 200 on a chat request; idle RSS after it)", "path\tversion\tstart-up ms\tidle RSS MB\t")
	for _, p := range r.Procs {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t\n", p.Path, p.Version, p.StartupMs, p.IdleRSSMB)
	}
	tw.Flush()
	for _, p := range r.Procs {
		fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Setup)
	}
	section("Added latency at concurrency 1 (paired, interleaved rounds; µs; added = path - base per round)", "path\tbase\tkind\trounds\tbase p50\tpath p50\tadded p50\tp90\tp99\tself-reported p50\t")
	for _, l := range r.Latency {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", l.Path, l.Base, l.Kind, l.Rounds, f0(l.BaseP50Us), f0(l.PathP50Us), f0(l.AddedP50Us), f0(l.AddedP90Us), f0(l.AddedP99Us), optUs(l.SelfReportedP50Us))
	}
	section(fmt.Sprintf("Throughput (closed loop, non-streaming, %v per point after a %v warm-up)", s.Duration, s.Duration/5), "path\tconcurrency\treq/s\tp50 µs\tp99 µs\terrors\tproxy CPU µs/req\tproxy CPU %\tbench CPU %\tothers CPU %\t")
	for _, t := range r.Throughput {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", t.Path, t.Concurrency, f0(t.RPS), f0(t.P50Us), f0(t.P99Us), t.Errors,
			optUs(t.ProxyCPUUsPerReq), optUs(t.CPU.ProxyPct), f0(t.CPU.BenchPct), f0(t.CPU.OthersPct))
	}
	section("Frontier: highest req/s of the sweep with p99 under", "path\t1 ms\t5 ms\t10 ms\t")
	for _, f := range r.Frontier {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", f.Path, orDash(f.Under1ms), orDash(f.Under5ms), orDash(f.Under10ms))
	}
	section(fmt.Sprintf("Streaming at scale: %d concurrent streams x %d deltas at %v (gap between content frames over the pace, µs, while all streams are open; added = path - direct percentile; stalled = over %v late; bunched = under a quarter pace)", s.Streams, s.Deltas, s.Pace, stallOver),
		"path\tframes\tgap p50\tgap p99\tadded p50\tadded p99\tmax\tstalled\tdropped\tbunched\tTTFT p99 ms\tRSS before\tpeak\tafter MB\tproxy CPU µs/frame\tproxy CPU %\tothers CPU %\t")
	for _, st := range r.Streaming {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", st.Path, st.Frames, st.Expected, f0(st.GapP50Us), f0(st.GapP99Us),
			optUs(st.AddedP50Us), optUs(st.AddedP99Us), f0(st.GapMaxUs), st.Stalled, st.Dropped, st.Bunched, st.TTFTP99Ms, optMB(st.RSSBeforeMB), optMB(st.RSSPeakMB), optMB(st.RSSAfterMB),
			optDec(st.ProxyCPUUsPerFrame), optUs(st.CPU.ProxyPct), f0(st.CPU.OthersPct))
	}
	tw.Flush()
	for _, st := range r.Streaming {
		if st.FirstError != "" {
			fmt.Fprintf(w, "  %s: %d failed streams, first: %s\n", st.Path, st.FailedStreams, st.FirstError)
		}
		if st.Masked > 0 {
			fmt.Fprintf(w, "  %s: %d frames masked by the guardrails\n", st.Path, st.Masked)
		}
	}
	if t := r.Tailnet; t != nil {
		fmt.Fprintf(w, "\nTailnet: nodes up in %v ms (StartNode/Up to home DERP); client reaches %s\n", t.NodeUpMs, t.Conn)
		fmt.Fprintf(w, "  router over the bare tsnet proxy, paired p50: %+.1f%%\n", t.AddedOverBarePct)
	}
	if len(r.Profiles) > 0 {
		fmt.Fprintf(w, "\nprofiles: %s\n", strings.Join(r.Profiles, ", "))
	}
	section("Targets (issue 8)", "target\twant\tgot\tmet\t")
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.Name, t.Want, t.Got, met)
	}
	tw.Flush()
}
