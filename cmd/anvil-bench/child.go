package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // the router child's --pprof listener
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tsnet"
	"tailscale.com/types/logger"
)

// childEnv names the role when this binary runs as one of its own child
// processes (the test binary dispatches on it too).
const childEnv = "ANVIL_BENCH_CHILD"

const (
	roleRouter  = "router"
	roleTailnet = "tailnet"
)

func runChild(role string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch role {
	case roleRouter:
		err = childRouter(ctx, args)
	case roleTailnet:
		err = childTailnet(ctx, args)
	default:
		err = fmt.Errorf("unknown child role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "anvil-bench %s: %v\n", role, err)
		return 1
	}
	return 0
}

// buildRouter is cmd/anvil-router's buildHandler for a config without a
// router token: backends, model resolution, the handler with the given
// in-flight limit, [guardrails] through the same ApplyGuardrails serve
// calls, and the production logger (JSON, info: one audit line per
// request).
func buildRouter(ctx context.Context, cfgPath string, maxConc int) (*tsrouter.Handler, *backends.Set, *config.Config, *slog.Logger, error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: config.LookupTierSecret})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := set.ResolveModels(ctx, log); err != nil {
		return nil, nil, nil, nil, err
	}
	h := tsrouter.New(tsrouter.Options{Backends: set, Logger: log, MaxConcurrency: maxConc})
	if err := h.ApplyGuardrails(cfg.Guardrails, config.LookupTierSecret); err != nil {
		h.Close()
		return nil, nil, nil, nil, err
	}
	return h, set, cfg, log, nil
}

// childRouter serves the router on a loopback dev listener, as
// `anvil-router serve --dev-listen` does; --pprof adds net/http/pprof on a
// second loopback listener.
func childRouter(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file")
	listen := fs.String("listen", "127.0.0.1:0", "dev listener")
	maxConc := fs.Int("max-concurrency", tsrouter.DefaultMaxConcurrency, "in-flight limit")
	pprofAddr := fs.String("pprof", "", "loopback address for net/http/pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, set, _, log, err := buildRouter(ctx, *cfgPath, *maxConc)
	if err != nil {
		return err
	}
	defer set.CloseIdle()
	if *pprofAddr != "" {
		pln, err := tsrouter.ListenLoopback(*pprofAddr)
		if err != nil {
			return err
		}
		go http.Serve(pln, http.DefaultServeMux)
	}
	ln, err := tsrouter.ListenLoopback(*listen)
	if err != nil {
		return err
	}
	return tsrouter.Serve(ctx, tsrouter.NewHTTPServer(h, log), ln, 2*time.Second, log)
}

// childTailnet runs two tailnet nodes side by side: "anvil", the router as
// `anvil-router serve` runs it (StartNode, ListenTailnet, WhoIs on every
// request), and "bare", a plain httputil.ReverseProxy on a tsnet listener
// with the same http.Server settings: the floor the router is compared
// with. :80 of bare reaches the zero-delay serve, :81 the TTFT serve.
func childTailnet(ctx context.Context, args []string) error {
	quietTailnet()
	fs := flag.NewFlagSet("tailnet", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "router config")
	control := fs.String("control", "", "control server URL")
	dir := fs.String("dir", "", "state directory")
	zero := fs.String("zero", "", "zero-delay serve URL")
	ttft := fs.String("ttft", "", "TTFT serve URL")
	maxConc := fs.Int("max-concurrency", tsrouter.DefaultMaxConcurrency, "in-flight limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, set, cfg, log, err := buildRouter(ctx, *cfgPath, *maxConc)
	if err != nil {
		return err
	}
	defer set.CloseIdle()

	t0 := time.Now()
	node, err := tsrouter.StartNode(ctx, tsrouter.NodeOptions{
		Hostname: "anvil", Dir: filepath.Join(*dir, "anvil"), ControlURL: *control,
		Ephemeral: true, Store: new(mem.Store), Logger: log,
	})
	if err != nil {
		return err
	}
	defer node.Close()
	if err := waitHomeDERP(ctx, node.TSNet()); err != nil {
		return err
	}
	svc, err := tsrouter.ListenTailnet(node, tsrouter.TailnetServing{Handler: h, Tailnet: cfg.Tailnet.Serving(), Drain: time.Second, Logger: log})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx) }()
	anvilUp := time.Since(t0)

	t1 := time.Now()
	bare := &tsnet.Server{
		Hostname: "bare", Dir: filepath.Join(*dir, "bare"), ControlURL: *control,
		Ephemeral: true, Store: new(mem.Store), Logf: logger.Discard, UserLogf: logger.Discard,
	}
	defer bare.Close()
	if _, err := bare.Up(ctx); err != nil {
		return err
	}
	if err := waitHomeDERP(ctx, bare); err != nil {
		return err
	}
	for port, target := range map[string]string{":80": *zero, ":81": *ttft} {
		ln, err := bare.Listen("tcp", port)
		if err != nil {
			return err
		}
		rp, err := bareProxy(target)
		if err != nil {
			return err
		}
		go tsrouter.NewHTTPServer(rp, log).Serve(ln)
	}
	fmt.Printf("ready anvil_ms=%d bare_ms=%d\n", anvilUp.Milliseconds(), time.Since(t1).Milliseconds())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return <-served
	}
}

// bareProxy is the simplest streaming-safe Go reverse proxy: flush every
// write, a keep-alive pool like the router's.
func bareProxy(target string) (http.Handler, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	return &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		FlushInterval: -1,
		Transport: &http.Transport{
			Proxy: nil, DisableCompression: true,
			MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
		},
	}, nil
}

// waitHomeDERP waits until s talks to its home DERP, as tsnet's own tests
// do, so that first packets are not dropped.
func waitHomeDERP(ctx context.Context, s *tsnet.Server) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h := s.Sys().HealthTracker.Get()
	ms := s.Sys().MagicSock.Get()
	for {
		if r := ms.GetLastNetcheckReport(ctx); r != nil && r.PreferredDERP != 0 && !h.GetDERPRegionReceivedTime(r.PreferredDERP).IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New(s.Hostname + " never reached its home DERP")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
