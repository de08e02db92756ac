package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/acp"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
	"tailscale.com/ipn/store/mem"
)

// The credentials of `anvil-router acp` come from the environment only:
// a flag would show in the process list, the file is shared.
const (
	envACPToken = acp.EnvRouterToken
	envACPKey   = acp.EnvAPIKey
)

// cmdACP runs the ACP agent on stdin/stdout; everything else it says goes
// to stderr, because stdout carries only protocol messages.
func cmdACP(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("acp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "a TOML file with an [acp] table (enabled = true); without it the defaults apply")
	routerURL := fs.String("router", envDefault("ANVIL_ROUTER_URL", "http://anvil"), "the router's base URL (ANVIL_ROUTER_URL)")
	useTSNet := fs.Bool("tsnet", false, "join the tailnet as an ephemeral node of its own (TS_AUTHKEY, TS_CONTROL_URL) instead of using the machine's Tailscale")
	check := fs.Bool("check", false, "validate --config's [acp] table, print a summary and exit")
	logLevel := fs.String("log-level", envDefault("ANVIL_LOG_LEVEL", "info"), "debug, info, warn or error (to stderr)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: anvil-router acp [--config FILE] [--router URL | --tsnet]\n\n"+
			"Speaks the Agent Client Protocol on stdin/stdout for an editor (Zed, JetBrains, Neovim).\n"+
			"Credentials: %s (router token), %s (API key), TS_AUTHKEY (with --tsnet).\n\n", envACPToken, envACPKey)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return usageError{err}
	}
	cfg := config.DefaultACP()
	cfg.Enabled = true
	if *cfgPath != "" {
		data, err := os.ReadFile(*cfgPath)
		if err != nil {
			return usageError{fmt.Errorf("reading %s: %w", *cfgPath, err)}
		}
		if cfg, err = config.ParseACP(*cfgPath, data); err != nil {
			return err
		}
		if !cfg.Enabled {
			return usageError{fmt.Errorf("%s: ACP is disabled; set [acp] enabled = true", *cfgPath)}
		}
	}
	if *check {
		fmt.Fprint(stdout, cfg.Summary())
		return nil
	}
	if !cfg.StdioEnabled {
		return usageError{errors.New("acp.transport.stdio.enabled is false, and stdio is the only transport")}
	}
	u, err := url.Parse(*routerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--router must be an http(s) URL, got %q", *routerURL)}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := &http.Client{}
	if *useTSNet {
		node, dir, err := joinAsAgent(ctx, log)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		defer node.Close()
		client = node.TSNet().HTTPClient()
	}
	agent, err := acp.New(acp.Options{
		Config:    agentConfig(cfg),
		Router:    &acp.Router{BaseURL: *routerURL, Client: client, Token: os.Getenv(envACPToken), Key: os.Getenv(envACPKey)},
		Log:       log,
		Version:   versionString(),
		MCPStderr: stderr,
	})
	if err != nil {
		return err
	}
	log.Info("acp agent ready", "router", u.Redacted(), "tsnet", *useTSNet, "model", cfg.DefaultModel, "storage", cfg.Sessions.Storage)
	return agent.Serve(ctx, stdin, stdout)
}

// joinAsAgent brings up an ephemeral tsnet node with in-memory state: the
// control server removes it when the agent exits, and no key is left on
// disk.
func joinAsAgent(ctx context.Context, log *slog.Logger) (*tsrouter.Node, string, error) {
	authKey := os.Getenv(acp.EnvTSAuthKey)
	if authKey == "" {
		return nil, "", usageError{errors.New("--tsnet needs TS_AUTHKEY (an ephemeral, pre-authorised key is best)")}
	}
	b := make([]byte, 3)
	rand.Read(b)
	dir, err := os.MkdirTemp("", "anvil-acp-tsnet-")
	if err != nil {
		return nil, "", err
	}
	node, err := tsrouter.StartNode(ctx, tsrouter.NodeOptions{
		Hostname:   envDefault("TS_HOSTNAME", "anvil-acp-"+hex.EncodeToString(b)),
		Dir:        dir,
		ControlURL: os.Getenv("TS_CONTROL_URL"),
		AuthKey:    authKey,
		Ephemeral:  true,
		Store:      new(mem.Store),
		Logger:     log,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return node, dir, nil
}

// stdioMode recognises `serve --mode stdio` (the spec's way to start the
// ACP agent) and returns the arguments without the mode flag.
func stdioMode(args []string) ([]string, bool) {
	for i, a := range args {
		switch {
		case (a == "--mode" || a == "-mode") && i+1 < len(args) && args[i+1] == "stdio":
			return append(slices.Clone(args[:i]), args[i+2:]...), true
		case a == "--mode=stdio" || a == "-mode=stdio":
			return append(slices.Clone(args[:i]), args[i+1:]...), true
		}
	}
	return nil, false
}

// agentConfig hands the agent its part of the [acp] table. The conversions
// of the nested tables keep both sides' fields in step (a field added to
// one and not the other does not compile).
func agentConfig(c config.ACP) acp.Config {
	return acp.Config{
		Agent:           acp.AgentInfo(c.Agent),
		Capabilities:    acp.Capabilities(c.Capabilities),
		DefaultModel:    c.DefaultModel,
		SystemPrompt:    c.SystemPrompt,
		CodingAgentMode: c.CodingAgentMode,
		Permissions:     acp.Permissions(c.Permissions),
		Sessions:        acp.Sessions(c.Sessions),
		MCP:             acp.MCPLimits(c.MCP),
	}
}
