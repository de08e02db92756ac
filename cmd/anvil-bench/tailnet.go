package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/envknob"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/net/netaddr"
	"tailscale.com/net/netns"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// tailnetKnobs keep every node on loopback (a benchmark must never reach
// Tailscale's servers or the internet): no log
// upload, no gateway probes, no host addresses advertised, never the real
// control plane, and no public ACME server.
var tailnetKnobs = [][2]string{
	{"TS_DISABLE_PORTMAPPER", "1"},
	{"TS_DEBUG_OMIT_LOCAL_ADDRS", "1"},
	{"TS_NO_LOGS_NO_SUPPORT", "1"},
	{"TS_PANIC_IF_HIT_MAIN_CONTROL", "1"},
	{"TS_DEBUG_ACME_DIRECTORY_URL", "http://127.0.0.1:9/directory"},
}

// quietTailnet sets the knobs in this process (envknob updates the values
// tailscale packages already read at init) and in the environment that
// child processes inherit, and turns off netns as tsnet's tests do.
func quietTailnet() {
	for _, kv := range tailnetKnobs {
		envknob.Setenv(kv[0], kv[1])
	}
	netns.SetEnabled(false)
}

// TailnetResult is the tailnet phase: the router's node against a bare
// tsnet reverse proxy node, both reached from a client node.
type TailnetResult struct {
	// NodeUpMs: StartNode/Up until the home DERP answers, per node.
	NodeUpMs map[string]float64 `json:"node_up_ms"`
	// Conn is how the client reaches the two nodes (direct UDP on
	// loopback, or via DERP); AllDirect is false if either stayed on DERP
	// (then the comparison is unfair).
	Conn      string `json:"conn"`
	AllDirect bool   `json:"all_direct"`
	// AddedOverBarePct is the paired p50 of (router - bare) over the bare
	// proxy's p50 latency, non-streaming: the 10% target.
	AddedOverBarePct float64 `json:"added_over_bare_pct"`
}

// tailnetEnv is the in-process tailnet: STUN, DERP and control on
// 127.0.0.1, and the client node.
type tailnetEnv struct {
	controlURL string
	closers    []func()
	client     *tsnet.Server
}

// close stops the client node, then control, DERP and STUN. Each step
// gets a few seconds: tsnet's Close can block while aborting connections
// whose peer is gone, and a benchmark must never hang on its way out.
func (e *tailnetEnv) close() {
	e.closeClient()
	for i := len(e.closers) - 1; i >= 0; i-- {
		within(5*time.Second, e.closers[i])
	}
}

func (e *tailnetEnv) closeClient() {
	if c := e.client; c != nil {
		e.client = nil
		within(5*time.Second, func() { c.Close() })
	}
}

// within runs f, waiting for it at most d (it is left running after that).
func within(d time.Duration, f func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// startTailnet brings up STUN, DERP and a control server on 127.0.0.1,
// the same pieces integration.RunDERPAndSTUN starts for tests (which needs
// a testing.TB, and whose STUN listens on every interface).
func startTailnet() (*tailnetEnv, error) {
	e := &tailnetEnv{}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { pc.Close() })
	go serveSTUN(pc)

	d := derpserver.New(key.NewNode(), logger.Discard)
	derp := httptest.NewUnstartedServer(derpserver.Handler(d))
	derp.Config.ErrorLog = log.New(io.Discard, "", 0)
	derp.StartTLS()
	e.closers = append(e.closers, func() { derp.CloseClientConnections(); derp.Close(); d.Close() })
	derpMap := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: {
		RegionID: 1, RegionCode: "bench",
		Nodes: []*tailcfg.DERPNode{{
			Name: "b1", RegionID: 1, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			STUNPort: pc.LocalAddr().(*net.UDPAddr).Port, DERPPort: derp.Listener.Addr().(*net.TCPAddr).Port,
			InsecureForTests: true, STUNTestIP: "127.0.0.1",
		}},
	}}}
	control := &testcontrol.Server{
		DERPMap: derpMap, DNSConfig: &tailcfg.DNSConfig{Proxied: true},
		MagicDNSDomain: "bench.ts.net", Logf: logger.Discard,
	}
	control.HTTPTestServer = httptest.NewUnstartedServer(control)
	control.HTTPTestServer.Config.ErrorLog = log.New(io.Discard, "", 0)
	control.HTTPTestServer.Start()
	e.closers = append(e.closers, control.HTTPTestServer.Close)
	e.controlURL = control.HTTPTestServer.URL
	return e, nil
}

// serveSTUN answers STUN binding requests until pc is closed.
func serveSTUN(pc *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pkt := buf[:n]
		if !stun.Is(pkt) {
			continue
		}
		txid, err := stun.ParseBindingRequest(pkt)
		if err != nil {
			continue
		}
		pc.WriteToUDPAddrPort(stun.Response(txid, netaddr.Unmap(src)), src)
	}
}

// joinClient brings up the load generator's node in this process.
func (e *tailnetEnv) joinClient(ctx context.Context, dir string) error {
	s := &tsnet.Server{
		Hostname: "bench", Dir: dir, ControlURL: e.controlURL, Ephemeral: true,
		Store: new(mem.Store), Logf: logger.Discard, UserLogf: logger.Discard,
	}
	e.client = s
	uctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := s.Up(uctx); err != nil {
		return err
	}
	return waitHomeDERP(ctx, s)
}

// connKind says whether the client reaches each peer directly or via
// DERP, and whether every peer is direct.
func (e *tailnetEnv) connKind(ctx context.Context) (string, bool) {
	lc, err := e.client.LocalClient()
	if err != nil {
		return "unknown", false
	}
	st, err := lc.Status(ctx)
	if err != nil {
		return "unknown", false
	}
	var parts []string
	direct := len(st.Peer) > 0
	for _, p := range st.Peer {
		how := "DERP"
		if p.CurAddr != "" {
			how = "direct " + p.CurAddr
		} else {
			direct = false
		}
		parts = append(parts, p.HostName+": "+how)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", "), direct
}

// waitDirect keeps traffic flowing to both nodes until the client talks to
// each of them directly (disco has upgraded the path from DERP), so the two
// are compared over the same kind of path; at most 30 s.
func (e *tailnetEnv) waitDirect(ctx context.Context, paths []*path) string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		kind, direct := e.connKind(ctx)
		if direct || time.Now().After(deadline) || ctx.Err() != nil {
			return kind
		}
		for _, p := range paths {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			p.do(rctx, pZero)
			cancel()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tailnetPhase measures the tailnet path: latency rounds over direct, the
// bare proxy and the router (each over the tailnet except direct), then the
// throughput sweep for the two tailnet paths.
func tailnetPhase(ctx context.Context, s settings, tmp string, serves [nProfiles]string, direct *path, res *Results, progress func(string, ...any)) error {
	progress("tailnet: control, DERP and STUN on 127.0.0.1; router and bare nodes in a child")
	e, err := startTailnet()
	if err != nil {
		return err
	}
	var child *proc
	var tailPaths []*path
	// Shut down in the order that cannot block: the client's connections
	// and node first, then the child (whose long polls would hold the
	// control server's Close), then control, DERP and STUN.
	defer func() {
		for _, p := range tailPaths {
			p.hc.CloseIdleConnections()
		}
		e.closeClient()
		if child != nil {
			child.stop()
		}
		e.close()
	}()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), childEnv+"="+roleTailnet)
	for _, kv := range tailnetKnobs {
		env = append(env, kv[0]+"="+kv[1])
	}
	args := []string{
		"--config", filepath.Join(tmp, "router.toml"), "--control", e.controlURL,
		"--dir", filepath.Join(tmp, "tailnet"), "--zero", serves[pZero], "--ttft", serves[pTTFT],
		"--max-concurrency", strconv.Itoa(s.MaxConcurrency),
	}
	if err := os.WriteFile(args[1], []byte(routerTOML(serves, s.Guardrails)), 0o600); err != nil {
		return err
	}
	child, err = startProc("tailnet child", self, args, env, filepath.Join(tmp, "tailnet.log"), true)
	if err != nil {
		return err
	}
	res.procs = append(res.procs, child)
	line, err := child.waitLine(ctx, "ready", 90*time.Second)
	if err != nil {
		return err
	}
	tr := &TailnetResult{NodeUpMs: map[string]float64{}}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		ms, _ := strconv.ParseFloat(v, 64)
		tr.NodeUpMs[strings.TrimSuffix(k, "_ms")] = ms
	}
	if err := e.joinClient(ctx, filepath.Join(tmp, "tailnet", "client")); err != nil {
		return fmt.Errorf("client node: %w", err)
	}
	conns := max(s.MaxConcurrency, 64)
	bare := newPath("tailnet-bare", [nProfiles]string{"http://bare", "http://bare:81", ""},
		[nProfiles]string{serveModel, serveModel, serveModel}, s.Deltas, conns, e.client.Dial)
	router := newPath("tailnet-router", [nProfiles]string{"http://anvil", "http://anvil", ""},
		profileNames, s.Deltas, conns, e.client.Dial)
	tailPaths = []*path{bare, router}
	for _, p := range tailPaths {
		p.proc = child
		if _, err := waitServed(ctx, p, child, 60*time.Second); err != nil {
			return err
		}
	}
	tr.Conn = e.waitDirect(ctx, tailPaths)
	_, tr.AllDirect = e.connKind(ctx)
	progress("tailnet: client reaches %s", tr.Conn)
	paths := []*path{direct, bare, router}
	for _, prof := range []profile{pZero, pTTFT} {
		if !s.runs("latency") {
			break
		}
		kind := kindName(prof)
		progress("tailnet: added latency, %s, %d rounds", kind, s.Pairs)
		smp, err := rounds(ctx, paths, prof, s.Pairs)
		if err != nil {
			return err
		}
		res.Latency = append(res.Latency, smp.paired(paths, 1, 0, kind), smp.paired(paths, 2, 0, kind), smp.paired(paths, 2, 1, kind))
		if prof == pZero {
			over := smp.paired(paths, 2, 1, kind)
			tr.AddedOverBarePct = 100 * over.AddedP50Us / over.BaseP50Us
		}
	}
	for _, c := range s.Concurrency {
		if !s.runs("throughput") {
			break
		}
		for _, p := range []*path{bare, router} {
			progress("tailnet: throughput %s at concurrency %d", p.name, c)
			res.Throughput = append(res.Throughput, throughput(ctx, p, c, s.Duration, res.procs))
		}
	}
	res.Tailnet = tr
	return nil
}

func kindName(p profile) string {
	if p == pTTFT {
		return "ttft"
	}
	return "non-streaming"
}
