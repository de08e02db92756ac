package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProcResult is a proxy's start-up and idle footprint.
type ProcResult struct {
	Path      string  `json:"path"`
	Version   string  `json:"version"`
	StartupMs float64 `json:"startup_ms"`
	IdleRSSMB float64 `json:"idle_rss_mb"`
	Setup     string  `json:"setup"`
}

// routerTOML routes one alias per profile to its serve. The tailnet table
// is read only by the tailnet child (https off: no certificate fetch).
// guardrails (a --guardrails value) adds a [guardrails] table with one pii
// provider on those stages, masking every entity it finds.
func routerTOML(serves [nProfiles]string, guardrails string) string {
	var b strings.Builder
	b.WriteString("[router]\nrelay_timeout = 30.0\n\n[tailnet]\nhostname = \"anvil\"\nephemeral = true\nhttps = false\n")
	for i, id := range profileNames {
		fmt.Fprintf(&b, `
[[router.tiers]]
id = %q
base_url = %q
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "ANVIL_BENCH_SERVE_KEY"
model = %q
`, id, serves[i], serveModel)
	}
	b.WriteString("\n[router.model_routes]\n")
	for _, id := range profileNames {
		fmt.Fprintf(&b, "%s = %q\n", id, id)
	}
	if stages := guardrailModes[guardrails]; len(stages) > 0 {
		fmt.Fprintf(&b, `
[guardrails]
enabled = true

[[guardrails.providers]]
name = "pii"
type = "pii"
stages = ["%s"]
[guardrails.providers.options]
default_action = "mask"
`, strings.Join(stages, `", "`))
	}
	return b.String()
}

// profileNames are the router's aliases (and tier ids) for the profiles.
var profileNames = [nProfiles]string{"zero", "ttft", "stream"}

// launch is what every proxy start shares: wait for the first served
// request (the start-up time), then let it idle and read its RSS.
func launch(ctx context.Context, p *path, pr *proc, idle time.Duration, version, setup string) (ProcResult, error) {
	p.proc = pr
	up, err := waitServed(ctx, p, pr, 60*time.Second)
	if err != nil {
		pr.stop()
		return ProcResult{}, err
	}
	time.Sleep(idle)
	return ProcResult{Path: p.name, Version: version, StartupMs: float64(up.Microseconds()) / 1000, IdleRSSMB: pr.rssMB(), Setup: setup}, nil
}

// startRouter runs the router on a dev listener in its own process: this
// binary as a child (see childRouter), or --router-bin.
func startRouter(ctx context.Context, s settings, tmp string, serves [nProfiles]string, idle time.Duration) (*path, ProcResult, error) {
	cfg := filepath.Join(tmp, "router.toml")
	if err := os.WriteFile(cfg, []byte(routerTOML(serves, s.Guardrails)), 0o600); err != nil {
		return nil, ProcResult{}, err
	}
	port, err := freePort()
	if err != nil {
		return nil, ProcResult{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	limit := strconv.Itoa(s.MaxConcurrency)
	env := os.Environ()
	var bin, version, setup string
	var args []string
	if s.RouterBin != "" {
		bin, version = s.RouterBin, commandVersion(s.RouterBin, "version")
		args = []string{"serve", "--config", cfg, "--dev-listen", addr, "--max-concurrency", limit, "--log-format", "json", "--log-level", "info"}
		setup = "anvil-router serve --dev-listen"
	} else {
		if bin, err = os.Executable(); err != nil {
			return nil, ProcResult{}, err
		}
		version = "this tree"
		args = []string{"--config", cfg, "--listen", addr, "--max-concurrency", limit}
		env = append(env, childEnv+"="+roleRouter)
		setup = "built-in child, as anvil-router serve --dev-listen"
	}
	setup += ", max_concurrency " + limit + ", JSON audit line per request to a file"
	if stages := guardrailModes[s.Guardrails]; len(stages) > 0 {
		setup += ", guardrails: pii (mask) on " + strings.Join(stages, " and ")
	}
	if len(s.RouterEnv) > 0 {
		env = append(env, s.RouterEnv...)
		setup += ", env " + strings.Join(s.RouterEnv, " ")
	}
	var pprofAddr string
	if s.pprofDir != "" {
		pp, err := freePort()
		if err != nil {
			return nil, ProcResult{}, err
		}
		pprofAddr = "127.0.0.1:" + strconv.Itoa(pp)
		args = append(args, "--pprof", pprofAddr)
	}
	pr, err := startProc("router", bin, args, env, filepath.Join(tmp, "router.log"), false)
	if err != nil {
		return nil, ProcResult{}, err
	}
	base := "http://" + addr
	p := newPath("router", [nProfiles]string{base, base, base}, profileNames, s.Deltas, s.MaxConcurrency, nil)
	p.pprof = pprofAddr
	info, err := launch(ctx, p, pr, idle, version, setup)
	return p, info, err
}

// nginxConf is a plain, streaming-safe reverse proxy: no response or
// request buffering, HTTP/1.1 keep-alive to the serves (nginx's default is
// a new upstream connection per request, which would handicap it), and
// keep-alive limits raised so nginx never closes connections mid-run.
func nginxConf(tmp string, ports, serves [nProfiles]string, conns int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile %d;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections %d; }
http {
  access_log %s/nginx-access.log;
  client_body_temp_path %s/nginx-body;
  proxy_temp_path %s/nginx-proxy;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_max_body_size 32m;
`, 4*conns+1024, tmp, tmp, 4*conns+512, tmp, tmp, tmp)
	for i := range nProfiles {
		fmt.Fprintf(&b, `  upstream serve%d { server %s; keepalive %d; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:%s;
    location / {
      proxy_pass http://serve%d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_cache off;
      proxy_read_timeout 60s;
    }
  }
`, i, strings.TrimPrefix(serves[i], "http://"), conns, ports[i], i)
	}
	b.WriteString("}\n")
	return b.String()
}

// caddyfile is the same for Caddy: flush_interval -1 (flush every write),
// keep-alive pool as large as the runs, an access log like the others.
func caddyfile(tmp string, ports, serves [nProfiles]string, conns int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n  admin off\n  auto_https off\n  storage file_system %s/caddy-data\n}\n", tmp)
	for i := range nProfiles {
		fmt.Fprintf(&b, `http://127.0.0.1:%s {
  bind 127.0.0.1
  log {
    output file %s/caddy-access.log
  }
  reverse_proxy %s {
    flush_interval -1
    transport http {
      keepalive 2m
      keepalive_idle_conns %d
      keepalive_idle_conns_per_host %d
    }
  }
}
`, ports[i], tmp, strings.TrimPrefix(serves[i], "http://"), conns, conns)
	}
	return b.String()
}

// startPeer starts nginx or caddy, configured from a temp file.
func startPeer(ctx context.Context, name, bin string, s settings, tmp string, serves [nProfiles]string, idle time.Duration) (*path, ProcResult, error) {
	var ports, bases [nProfiles]string
	for i := range nProfiles {
		port, err := freePort()
		if err != nil {
			return nil, ProcResult{}, err
		}
		ports[i] = strconv.Itoa(port)
		bases[i] = "http://127.0.0.1:" + ports[i]
	}
	conns := max(s.Streams, s.MaxConcurrency)
	var args []string
	var version, setup string
	env := os.Environ()
	switch name {
	case "nginx":
		conf := filepath.Join(tmp, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(tmp, ports, serves, conns)), 0o644); err != nil {
			return nil, ProcResult{}, err
		}
		args = []string{"-p", tmp, "-c", conf, "-e", filepath.Join(tmp, "nginx-error.log")}
		version = strings.TrimPrefix(commandVersion(bin, "-v"), "nginx version: ")
		setup = "worker_processes auto, proxy_buffering off, proxy_request_buffering off, upstream keepalive, access log to a file"
	case "caddy":
		conf := filepath.Join(tmp, "Caddyfile")
		if err := os.WriteFile(conf, []byte(caddyfile(tmp, ports, serves, conns)), 0o644); err != nil {
			return nil, ProcResult{}, err
		}
		args = []string{"run", "--config", conf, "--adapter", "caddyfile"}
		home := filepath.Join(tmp, "caddy-home")
		env = append(env, "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
		version = commandVersion(bin, "version")
		setup = "reverse_proxy flush_interval -1, keep-alive pool, admin off, access log to a file"
	}
	pr, err := startProc(name, bin, args, env, filepath.Join(tmp, name+".log"), false)
	if err != nil {
		return nil, ProcResult{}, err
	}
	models := [nProfiles]string{serveModel, serveModel, serveModel}
	p := newPath(name, bases, models, s.Deltas, conns, nil)
	info, err := launch(ctx, p, pr, idle, version, setup)
	return p, info, err
}

// commandVersion runs `bin args...` and returns its first output line.
func commandVersion(bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
