package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/state"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// nodeOptions merges [tailnet] with the TS_* environment, which wins: in
// a container the environment is how operators configure the node. The auth
// key comes from the environment only, never from the file.
func nodeOptions(tn config.Tailnet, getenv func(string) string) (tsrouter.NodeOptions, error) {
	o := tsrouter.NodeOptions{
		Hostname:      tn.Hostname,
		Dir:           tn.StateDir,
		ControlURL:    tn.ControlURL,
		AdvertiseTags: tn.AdvertiseTags,
		Ephemeral:     tn.Ephemeral,
	}
	if v := getenv("TS_HOSTNAME"); v != "" {
		if msg := config.CheckHostname(v); msg != "" {
			return o, fmt.Errorf("TS_HOSTNAME %s", msg)
		}
		o.Hostname = v
	}
	if v := getenv("TS_STATE_DIR"); v != "" {
		o.Dir = v
	}
	if o.Dir == "" {
		dir, err := state.DefaultTailnetDir()
		if err != nil {
			return o, err
		}
		o.Dir = dir
	}
	if v := getenv("TS_CONTROL_URL"); v != "" {
		if msg := config.CheckControlURL(v); msg != "" {
			return o, fmt.Errorf("TS_CONTROL_URL %s", msg)
		}
		o.ControlURL = v
	}
	if v := getenv("TS_ADVERTISE_TAGS"); v != "" {
		o.AdvertiseTags = nil
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if msg := config.CheckTag(tag); msg != "" {
				return o, fmt.Errorf("TS_ADVERTISE_TAGS: %q %s", tag, msg)
			}
			o.AdvertiseTags = append(o.AdvertiseTags, tag)
		}
	}
	o.AuthKey = getenv("TS_AUTHKEY")
	if o.AuthKey == "" {
		o.AuthKey = getenv("TS_AUTH_KEY") // the tailscale container's spelling
	}
	return o, nil
}

// serveTailnet joins the tailnet as the configured node and serves the
// router there (and on the optional loopback listener) until ctx ends.
func serveTailnet(ctx context.Context, cfg *config.Config, h *tsrouter.Handler, lim limits, log *slog.Logger) error {
	opts, err := nodeOptions(cfg.Tailnet, os.Getenv)
	if err != nil {
		return usageError{err}
	}
	opts.Logger = log
	tsrouter.QuietNetworkDefaults()
	start := time.Now()
	node, err := tsrouter.StartNode(ctx, opts)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil // stopped while waiting for login
		}
		return err
	}
	defer node.Close()
	h.SetTailnetName(node.Name)
	svc, err := tsrouter.ListenTailnet(node, tsrouter.TailnetServing{
		Handler:     h,
		Tailnet:     cfg.Tailnet.Serving(),
		LocalListen: cfg.Server.LocalListen,
		LocalAPI:    cfg.Server.LocalAPI,
		Drain:       lim.drain,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	log.Info("anvil-router ready", "version", versionString(), "aliases", len(cfg.Router.Routes), "startup", time.Since(start).Round(time.Millisecond).String())
	return svc.Serve(ctx)
}

// cmdHealthcheck is the container HEALTHCHECK: GET /healthz on the
// loopback listener, exit 0 on 200 and 1 otherwise. The image has no curl.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "loopback address of the router (default: [server].local_listen of the config)")
	cfgPath := fs.String("config", "", "config file to read local_listen from")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *addr == "" {
		path, err := config.Discover(*cfgPath)
		if err != nil {
			return usageError{err}
		}
		cfg, err := config.Load(path)
		if err != nil {
			return usageError{err}
		}
		if cfg.Server.LocalListen == "" {
			return usageError{errors.New("no --addr and no [server].local_listen in the config")}
		}
		*addr = cfg.Server.LocalListen
	}
	if err := tsrouter.CheckLoopback(*addr); err != nil {
		return usageError{err}
	}
	c := &http.Client{Timeout: *timeout, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get("http://" + *addr + "/healthz")
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: /healthz answered %d", resp.StatusCode)
	}
	fmt.Fprintln(stdout, "healthy")
	return nil
}
