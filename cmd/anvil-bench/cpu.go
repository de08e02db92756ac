package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of /proc CPU times (100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuSnap is a CPU-time reading of the whole machine, of this process
// (load generator and fake serves) and of every process this tool
// started, so that a phase can say what the proxy cost per request and
// how much CPU something else on the machine took meanwhile.
type cpuSnap struct {
	wall  time.Time
	busy  time.Duration // all CPUs, from /proc/stat
	self  time.Duration
	procs map[*proc]time.Duration
}

func takeSnap(procs []*proc) cpuSnap {
	s := cpuSnap{wall: time.Now(), procs: map[*proc]time.Duration{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 {
				continue // idle, iowait, guest (already in user)
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			s.busy += time.Duration(n) * clockTick
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, p := range procs {
		s.procs[p] = p.cpu()
	}
	return s
}

// cpu is the CPU time used so far by the process and its descendants.
func (p *proc) cpu() time.Duration {
	if !p.alive() {
		return p.lastCPU
	}
	var ticks int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * clockTick
}

// CPUUse is what a phase cost, in percent of one core (the machine has
// CPUs x 100%).
type CPUUse struct {
	ProxyPct  *float64 `json:"proxy_pct,omitempty"`
	BenchPct  float64  `json:"bench_pct"`
	OthersPct float64  `json:"others_pct"`
}

// use is the CPU between a and b; proxy (may be nil) is the measured path's
// process, procs every process this tool runs.
func use(a, b cpuSnap, proxy *proc) (CPUUse, time.Duration) {
	wall := b.wall.Sub(a.wall)
	if wall <= 0 {
		return CPUUse{}, 0
	}
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(wall) }
	mine := b.self - a.self
	var proxyCPU time.Duration
	for p, t := range b.procs {
		d := t - a.procs[p]
		mine += d
		if p == proxy {
			proxyCPU = d
		}
	}
	u := CPUUse{BenchPct: pct(b.self - a.self), OthersPct: max(0, pct(b.busy-a.busy-mine))}
	if proxy != nil {
		v := pct(proxyCPU)
		u.ProxyPct = &v
	}
	return u, proxyCPU
}
