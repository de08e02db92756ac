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
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
	"github.com/anvil-serving/anvil-router/tsrouter/sandbox"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
	usagestore "github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// commonFlags are shared by every command that reads a config and logs.
type commonFlags struct {
	config    string
	logLevel  string
	logFormat string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "config file (default: $ANVIL_CONFIG, $ANVIL_SERVING_HOME/router.toml, ./router.toml)")
	fs.StringVar(&c.logLevel, "log-level", envDefault("ANVIL_LOG_LEVEL", "info"), "debug, info, warn or error ($ANVIL_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", envDefault("ANVIL_LOG_FORMAT", "auto"), "auto (text on a terminal, else JSON), text or json ($ANVIL_LOG_FORMAT)")
}

// limits are the process-level knobs that are not in the TOML file.
type limits struct {
	drain          time.Duration
	maxConcurrency int
	maxBodyBytes   int64
}

func (l *limits) register(fs *flag.FlagSet) {
	fs.DurationVar(&l.drain, "drain-timeout", tsrouter.DefaultDrainTimeout, "on SIGINT/SIGTERM, how long in-flight streams may finish")
	fs.IntVar(&l.maxConcurrency, "max-concurrency", envInt("ANVIL_MAX_CONCURRENCY", tsrouter.DefaultMaxConcurrency), "requests in flight before 503 server_busy ($ANVIL_MAX_CONCURRENCY)")
	fs.Int64Var(&l.maxBodyBytes, "max-body-bytes", int64(envInt("ANVIL_MAX_BODY_BYTES", tsrouter.DefaultMaxBodyBytes)), "largest request body ($ANVIL_MAX_BODY_BYTES)")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(envDefault(name, "")); err == nil && v > 0 {
		return v
	}
	return def
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	return nil
}

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	var lim limits
	cf.register(fs)
	lim.register(fs)
	devListen := fs.String("dev-listen", envDefault("ANVIL_DEV_LISTEN", ""), "serve on this loopback address instead of joining the tailnet, e.g. 127.0.0.1:8000 ($ANVIL_DEV_LISTEN)")
	sandboxFlag := fs.String("sandbox", envDefault("ANVIL_SANDBOX", "auto"), "bind sandbox (Landlock): auto (enforce where the kernel can), require (refuse to start without it) or off ($ANVIL_SANDBOX)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	sandboxMode, err := sandbox.ParseMode(*sandboxFlag)
	if err != nil {
		return usageError{err}
	}
	log, err := newLogger(stderr, cf.logFormat, cf.logLevel)
	if err != nil {
		return err
	}
	if *devListen != "" {
		if err := tsrouter.CheckLoopback(*devListen); err != nil {
			return usageError{err}
		}
	}
	path, err := config.Discover(cf.config)
	if err != nil {
		return usageError{err}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return usageError{err}
	}
	// Before any listener opens: the rules hold for every later bind.
	if err := confineBinds(sandboxMode, cfg, *devListen, log); err != nil {
		return err
	}
	removeStaleTemps(cfg, log)
	h, set, err := buildHandler(cfg, log, lim)
	if err != nil {
		return usageError{err}
	}
	defer set.CloseIdle()
	defer h.Close()
	if stopStats := keepStats(cfg, h.Usage(), log); stopStats != nil {
		// After the drain: the final snapshot counts the last requests.
		defer stopStats()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set.Start(ctx)
	keys := h.Keys()
	if keys != nil {
		go keys.Watch(ctx, 2*time.Second)
	}
	// SIGHUP is caught from here to the process's end, drain included:
	// its default action would kill the router mid-drain and lose the
	// final usage snapshot.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go reloadOnHUP(ctx, hup, path, cfg, h, log)
	if *devListen == "" {
		return serveTailnet(ctx, cfg, h, lim, log)
	}
	ln, err := tsrouter.ListenLoopback(*devListen)
	if err != nil {
		return err
	}
	log.Info("anvil-router serving on the dev listener", "addr", "http://"+ln.Addr().String()+"/v1", "config", path, "version", versionString(), "aliases", len(cfg.Router.Routes))
	return tsrouter.Serve(ctx, tsrouter.NewHTTPServer(h, log), ln, lim.drain, log)
}

// buildHandler turns a validated config into the serving handler: the
// router token is resolved here, once, and only its digest is kept.
func buildHandler(cfg *config.Config, log *slog.Logger, lim limits) (*tsrouter.Handler, *backends.Set, error) {
	var token policy.Token
	if cfg.Server.AuthEnv != "" {
		secret, err := config.ResolveSecret(cfg.Server.AuthEnv)
		if err != nil {
			return nil, nil, err
		}
		token = policy.NewToken(secret)
	} else if cfg.RequiresAuth() {
		return nil, nil, errors.New("[server].auth_env must be set: audio routes are only served to authenticated callers")
	} else {
		log.Warn("router token auth is off ([server].auth_env not set)")
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: config.LookupTierSecret})
	if err != nil {
		return nil, nil, err
	}
	if err := set.ResolveModels(context.Background(), log); err != nil {
		return nil, nil, err
	}
	if p := cfg.Server.AdmissionStatePath; p != "" {
		if err := set.PersistIntent(p, log); err != nil {
			return nil, nil, err
		}
	}
	decisions, err := telemetry.New(telemetry.Options{LogPath: cfg.Server.DecisionLogPath, Aliases: aliasesOf(cfg), Logger: log})
	if err != nil {
		return nil, nil, err
	}
	keys, err := keyRing(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Server.AuthEnv != "" && cfg.Admin.AuthEnv == "" && cfg.Admin.Auth.Method == "" && keys.Set().Len() > 0 {
		log.Warn("API keys are in use and the router token is also the admin credential: set [admin.auth] so key holders who know the router token are not admins")
	}
	admin, err := adminAuth(cfg.Admin, log)
	if err != nil {
		return nil, nil, err
	}
	st := cfg.Admin.Stats
	h := tsrouter.New(tsrouter.Options{
		Usage: tsrouter.UsageOptions{Disabled: !st.Enabled, NoTokenTracking: !st.TokenTracking,
			Store: tsrouter.NewUsageStore(set, st.RetentionWindow, nil)},
		Keys:           keys,
		AdminAuth:      admin,
		Recorder:       decisions,
		Backends:       set,
		Token:          token,
		Logger:         log,
		MaxBodyBytes:   lim.maxBodyBytes,
		MaxConcurrency: lim.maxConcurrency,
		Version:        versionString(),

		ExhaustionRetryAfter: cfg.Router.ExhaustionRetryAfter,
		RefuseHostedTools:    cfg.Router.RefuseHostedTools,
		WebUIPrefix:          cfg.WebUI.Prefix(),
		ConfigView:           cfg.View(),
	})
	if err := h.ApplyGuardrails(cfg.Guardrails, config.LookupTierSecret); err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, set, nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, err := config.Discover(cf.config)
	if err != nil {
		return usageError{err}
	}
	_, err = checkConfig(path, stdout)
	return err
}

// checkConfig is what `check` does with a config file, shared with `init`
// so a written config passes exactly the validation an operator runs:
// load and validate it, then print its routes.
func checkConfig(path string, stdout io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	fmt.Fprintf(stdout, "%s: ok\n%s", path, cfg.Summary())
	return cfg, nil
}

func aliasesOf(cfg *config.Config) []string {
	var out []string
	for _, r := range cfg.Router.Routes {
		out = append(out, r.Alias)
	}
	return out
}

// keyRing loads the API keys: inline, api_keys_file and the runtime store
// (by default next to the tailnet state, so a container's volume keeps
// it).
func keyRing(cfg *config.Config, log *slog.Logger) (*tsrouter.KeyRing, error) {
	store, err := keyStorePath(cfg)
	if err != nil {
		return nil, err
	}
	return tsrouter.NewKeyRing(cfg.APIKeys, store, tsrouter.BackendIDs(cfg.Backends()), os.LookupEnv, log)
}

func keyStorePath(cfg *config.Config) (string, error) {
	if cfg.APIKeys.StorePath != "" {
		return cfg.APIKeys.StorePath, nil
	}
	dir, err := tailnetStateDir(cfg)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "anvil-api-keys.json"), nil
}

// removeStaleTemps deletes what a kill -9 during a key store or admission
// state write left behind (temporary copies that can hold digests of
// rotated-away keys). Only serve does this, at start: the offline keys
// command may run beside a live router.
func removeStaleTemps(cfg *config.Config, log *slog.Logger) {
	var paths []string
	if p, err := keyStorePath(cfg); err == nil {
		paths = append(paths, p, state.RevokedPath(p))
	}
	if p := cfg.Server.AdmissionStatePath; p != "" {
		paths = append(paths, p)
	}
	if p, err := statsPath(cfg); err == nil && p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		n, err := state.RemoveStaleTemps(p)
		if err != nil {
			log.Warn("could not remove stale temporary files", "file", filepath.Base(p), "err", err)
		}
		if n > 0 {
			log.Info("removed stale temporary files left by an interrupted write", "file", filepath.Base(p), "count", n)
		}
	}
}

// reloadOnHUP re-reads the config file on every SIGHUP, once, and applies
// what takes effect without a restart (applyReload). hup stays registered
// after ctx ends, so a late SIGHUP is ignored, not fatal.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, running *config.Config, h *tsrouter.Handler, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		next, err := config.Load(path)
		if err != nil {
			log.Error("SIGHUP: config not re-read; everything stays as it is", "err", err)
			continue
		}
		running = applyReload(h, running, next, log)
	}
}

// applyReload puts in force the sections of a re-read config that take
// effect without a restart — [guardrails], [api_keys] and [admin.stats]
// token_tracking — each on its own: a section that does not load keeps
// the running one. It returns the config now in force (those sections
// as applied, everything else as running), which /admin/config shows.
func applyReload(h *tsrouter.Handler, running, next *config.Config, log *slog.Logger) *config.Config {
	eff := *running
	if reloadGuardrails(h, next, log) {
		eff.Guardrails = next.Guardrails
	}
	if keys := h.Keys(); keys != nil {
		if err := keys.UpdateConfig(next.APIKeys); err != nil {
			log.Error("SIGHUP: api keys not reloaded; the previous keys stay in force", "err", err)
		} else {
			eff.APIKeys = next.APIKeys
			log.Info("api keys reloaded", "why", "SIGHUP", "keys", keys.Set().Len())
		}
	}
	if h.Usage() != nil {
		was, st := running.Admin.Stats, next.Admin.Stats
		h.SetTokenTracking(st.TokenTracking)
		eff.Admin.Stats.TokenTracking = st.TokenTracking
		if st.Enabled != was.Enabled || st.RetentionWindow != was.RetentionWindow || st.Persistence != was.Persistence {
			log.Warn("SIGHUP: [admin.stats] changes other than token_tracking take effect at the next restart")
		}
		log.Info("usage token tracking reloaded", "why", "SIGHUP", "token_tracking", st.TokenTracking)
	}
	h.SetConfigView(eff.View())
	return &eff
}

// statsPath is the usage snapshot ([admin.stats.persistence].path, by
// default anvil-usage.snapshot next to the API key store in the state
// directory); "" when persistence is off.
func statsPath(cfg *config.Config) (string, error) {
	st := cfg.Admin.Stats
	if !st.Enabled || !st.Persistence.Enabled {
		return "", nil
	}
	if st.Persistence.Path != "" {
		return st.Persistence.Path, nil
	}
	dir, err := tailnetStateDir(cfg)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "anvil-usage.snapshot"), nil
}

// keepStats restores the usage snapshot and keeps writing it; the stop
// function writes the final one. nil when there is nothing to keep.
func keepStats(cfg *config.Config, store *usagestore.Store, log *slog.Logger) (stop func()) {
	if store == nil {
		return nil
	}
	path, err := statsPath(cfg)
	if err != nil {
		log.Warn("usage statistics will not persist: no state directory", "err", err)
		return nil
	}
	if path == "" {
		return store.PruneEvery(5 * time.Minute)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Warn("usage statistics will not persist", "path", path, "err", err)
		return nil
	}
	p := cfg.Admin.Stats.Persistence
	store.Restore(path, p.MaxAge, log)
	return store.Keep(path, p.SnapshotInterval, log)
}

// tailnetStateDir is where the node keeps its state (TS_STATE_DIR, then
// [tailnet].state_dir, then the default).
func tailnetStateDir(cfg *config.Config) (string, error) {
	if v := os.Getenv("TS_STATE_DIR"); v != "" {
		return v, nil
	}
	if cfg.Tailnet.StateDir != "" {
		return cfg.Tailnet.StateDir, nil
	}
	return state.DefaultTailnetDir()
}

// reloadGuardrails swaps in the engine of a re-read [guardrails]; one that
// does not build (a bad option, an unknown provider type) keeps the
// running engine.
func reloadGuardrails(h *tsrouter.Handler, cfg *config.Config, log *slog.Logger) (applied bool) {
	if !cfg.Guardrails.Enabled {
		h.SetGuardrails(nil)
		log.Info("guardrails off", "why", "SIGHUP")
		return true
	}
	eng, err := h.NewGuardrails(cfg.Guardrails, config.LookupTierSecret)
	if err != nil {
		log.Error("SIGHUP: guardrails not reloaded; the previous ones stay in force", "err", err)
		return false
	}
	h.SetGuardrails(eng)
	log.Info("guardrails reloaded", "why", "SIGHUP", "providers", len(cfg.Guardrails.Providers), "mode", cfg.Guardrails.Mode)
	return true
}
