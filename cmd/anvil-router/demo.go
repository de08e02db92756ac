package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

//go:embed demo.toml
var demoConfig string

// demoDeltas is what the fake serve streams in the demo, paced so a person
// watching curl sees tokens arrive one by one.
var demoDeltas = strings.SplitAfter("Hello! I am a fake model behind anvil-router. Every token you see was relayed as soon as the serve produced it.", " ")

// cmdDemo runs the router's main job on an embedded default: a fake
// vLLM-like serve and the router, both on loopback, no tailnet, no GPU.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8000", "router address (loopback only)")
	pace := fs.Duration("pace", 80*time.Millisecond, "delay between streamed tokens of the fake serve")
	logLevel := fs.String("log-level", envDefault("ANVIL_LOG_LEVEL", "info"), "debug, info, warn or error")
	logFormat := fs.String("log-format", envDefault("ANVIL_LOG_FORMAT", "auto"), "auto, text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if err := tsrouter.CheckLoopback(*listen); err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	_, serveURL, stopServe, err := fakeserve.Start(ctx, "127.0.0.1:0", fakeserve.Options{
		Model:  "demo/fake-llm",
		Deltas: demoDeltas,
		Pace:   *pace,
		TTFT:   150 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("starting the fake serve: %w", err)
	}
	defer stopServe()

	cfg, err := config.Parse("demo.toml (embedded)", []byte(strings.ReplaceAll(demoConfig, "{{BASE_URL}}", serveURL)))
	if err != nil {
		return fmt.Errorf("embedded demo config: %w", err)
	}
	h, set, err := buildHandler(cfg, log, limits{drain: 5 * time.Second})
	if err != nil {
		return err
	}
	defer set.CloseIdle()
	defer h.Close()
	set.Start(ctx)
	ln, err := tsrouter.ListenLoopback(*listen)
	if err != nil {
		return fmt.Errorf("%w (is another demo running? try --listen 127.0.0.1:8001)", err)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, `anvil-router demo: router on %[1]s/v1, fake vLLM serve on %[2]s (model demo/fake-llm)

Try, in another terminal:

  curl -N %[1]s/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model":"chat","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

  curl %[1]s/v1/models

Ctrl-C stops both.
`, base, serveURL)
	return tsrouter.Serve(ctx, tsrouter.NewHTTPServer(h, log), ln, 5*time.Second, log)
}
