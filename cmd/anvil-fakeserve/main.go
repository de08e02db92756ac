// Command anvil-fakeserve runs the fake vLLM-like OpenAI-compatible model
// serve from package fakeserve on a loopback address, for demos and manual
// testing of the router:
//
//	anvil-fakeserve --listen 127.0.0.1:8001 --model NAME [--ttft 0s] [--pace 0s]
//	    [--deltas "a|b|c"] [--mode ok] [--cut-after 2] [--api-key-env NAME]
//
// It refuses to listen on anything but a loopback address. The failure mode
// can be switched while it runs:
//
//	curl -d '{"mode":"cut"}' http://127.0.0.1:8001/fake/mode
//	curl http://127.0.0.1:8001/fake/stats
//
// SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], os.Getenv, os.Stderr, logger); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		logger.Error("anvil-fakeserve failed", "err", err)
		os.Exit(1)
	}
}

// usageError is a bad command line (exit status 2); flag has already
// printed the details.
type usageError struct{ error }

func run(args []string, getenv func(string) string, stderr io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("anvil-fakeserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8001", "loopback `host:port` to listen on")
	model := fs.String("model", fakeserve.DefaultModel, "served model id")
	ttft := fs.Duration("ttft", 0, "delay before the first token")
	pace := fs.Duration("pace", 0, "delay between content deltas")
	deltas := fs.String("deltas", "", "content deltas separated by '|' (default \"Hello| from| the| fake| serve|.\")")
	mode := fs.String("mode", string(fakeserve.ModeOK), "initial failure `mode`: "+modeNames())
	cutAfter := fs.Int("cut-after", 0, "deltas sent before mode cut/midstream-error strikes (0 means 2, negative means none)")
	apiKeyEnv := fs.String("api-key-env", "", "environment variable `NAME` holding the API key clients must send as a Bearer token")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "anvil-fakeserve: unexpected arguments: %q\n", fs.Args())
		return usageError{errors.New("unexpected arguments")}
	}

	m, err := fakeserve.ParseMode(*mode)
	if err != nil {
		return err
	}
	opts := fakeserve.Options{
		Model:    *model,
		TTFT:     *ttft,
		Pace:     *pace,
		CutAfter: *cutAfter,
		Mode:     m,
		Logf: func(format string, args ...any) {
			logger.Info(fmt.Sprintf(format, args...))
		},
	}
	if *deltas != "" {
		opts.Deltas = strings.Split(*deltas, "|")
	}
	if *apiKeyEnv != "" {
		opts.APIKey = getenv(*apiKeyEnv)
		if opts.APIKey == "" {
			return fmt.Errorf("--api-key-env: environment variable %s is empty or unset", *apiKeyEnv)
		}
	}
	if _, err := fakeserve.LoopbackAddr(*listen); err != nil {
		return err
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	srv, url, stop, err := fakeserve.Start(ctx, *listen, opts)
	if err != nil {
		return err
	}
	o := srv.Options()
	logger.Info("anvil-fakeserve listening", "url", url, "model", o.Model, "mode", o.Mode,
		"ttft", o.TTFT, "pace", o.Pace, "deltas", len(o.Deltas), "api_key", o.APIKey != "")

	<-ctx.Done()
	stopSignals() // a second signal kills the process
	logger.Info("anvil-fakeserve shutting down")
	start := time.Now()
	stop()
	st := srv.Stats()
	logger.Info("anvil-fakeserve stopped", "took", time.Since(start).Round(time.Millisecond),
		"requests", st.Requests, "completed", st.Completed, "cancelled", st.Cancelled, "aborted", st.Aborted)
	return nil
}

func modeNames() string {
	var names []string
	for _, m := range fakeserve.Modes() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}
