package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process this tool started (a proxy or a child role). Its
// memory is read from /proc: VmRSS summed over the process and its
// descendants (nginx's workers), and VmHWM after resetting it through
// clear_refs for the peak of one phase.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	logPath string
	lines   chan string // stdout lines, when asked for
	exited  chan struct{}
	err     error
	lastCPU time.Duration // CPU time read just before stop
}

// startProc starts bin with args and env; stderr (and stdout unless
// wantStdout) go to logPath. The child gets SIGTERM if this process dies
// (SIGTERM, not SIGKILL, so that nginx's master takes its workers down).
func startProc(name, bin string, args, env []string, logPath string, wantStdout bool) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	var out io.ReadCloser
	if wantStdout {
		if out, err = cmd.StdoutPipe(); err != nil {
			f.Close()
			return nil, err
		}
		p.lines = make(chan string, 16)
	} else {
		cmd.Stdout = f
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	if out != nil {
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				select {
				case p.lines <- sc.Text():
				default:
				}
			}
		}()
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop asks the process to stop (SIGTERM), then kills it and any
// descendant it left behind, each by its own pid.
func (p *proc) stop() {
	if p == nil {
		return
	}
	kids := p.pids()
	if p.alive() {
		p.lastCPU = p.cpu()
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	for _, pid := range kids[1:] {
		if parentOf(pid) == 1 { // orphaned worker of ours
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// failure explains an early exit with the tail of the process's log.
func (p *proc) failure() error {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, p.err, bytes.TrimSpace(b))
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitLine waits for a stdout line starting with prefix.
func (p *proc) waitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-p.exited:
			return "", p.failure()
		case <-t.C:
			return "", fmt.Errorf("%s: not ready after %v", p.name, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// pids is the process and its descendants.
func (p *proc) pids() []int {
	root := p.cmd.Process.Pid
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := parentOf(pid); pp > 0 {
			kids[pp] = append(kids[pp], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, kids[out[i]]...)
	}
	return out
}

func parentOf(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return -1
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// statusKB reads a "Vm...:  N kB" line of /proc/PID/status.
func statusKB(pid int, key string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// rssMB is the resident memory of the process tree now.
func (p *proc) rssMB() float64 {
	var kb int64
	for _, pid := range p.pids() {
		kb += statusKB(pid, "VmRSS")
	}
	return float64(kb) / 1024
}

// resetPeak starts a new peak-RSS window (VmHWM) for every process of the
// tree; false if the kernel refused.
func (p *proc) resetPeak() bool {
	ok := true
	for _, pid := range p.pids() {
		if os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0) != nil {
			ok = false
		}
	}
	return ok
}

// peakMB is the sum of the tree's VmHWM (each process's own peak; an upper
// bound of the tree's simultaneous peak).
func (p *proc) peakMB() float64 {
	var kb int64
	for _, pid := range p.pids() {
		kb += statusKB(pid, "VmHWM")
	}
	return float64(kb) / 1024
}

// rssSampler records the highest RSS of p until stopped: a cross-check of
// the VmHWM peak when clear_refs is not available.
func rssSampler(p *proc, every time.Duration) (stop func() float64) {
	done := make(chan struct{})
	res := make(chan float64, 1)
	go func() {
		peak := p.rssMB()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				peak = max(peak, p.rssMB())
			case <-done:
				res <- max(peak, p.rssMB())
				return
			}
		}
	}()
	return func() float64 { close(done); return <-res }
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitServed polls p with the zero-delay request until it answers 200,
// and returns the time since the process started.
func waitServed(ctx context.Context, p *path, pr *proc, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if pr != nil && !pr.alive() {
			return 0, pr.failure()
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, err := p.do(rctx, pZero)
		cancel()
		if err == nil {
			return time.Since(pr.started), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		last = err
		time.Sleep(time.Millisecond)
	}
	return 0, errors.Join(fmt.Errorf("%s: no answer within %v", p.name, timeout), last)
}
