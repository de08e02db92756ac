package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// cmdInit writes a router.toml for the OpenAI-compatible serves it finds on
// this host's loopback (and, with --compose, adds the router service to the
// serves' compose file):
//
//	anvil-router init [--ports 8000,30000] [--out router.toml] [--compose compose.yaml] [--force]
func cmdInit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ports := fs.String("ports", "", "comma-separated loopback ports (or 127.0.0.1:PORT, [::1]:PORT) to probe (default: "+joinInts(defaultInitPorts)+")")
	out := fs.String("out", "router.toml", "config file to write")
	compose := fs.String("compose", "", "compose file of the serves: add the router service to it (printed instead when the file is not writable)")
	force := fs.Bool("force", false, "replace an existing --out file, and an existing router service and config in --compose")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	targets, err := parseInitPorts(*ports)
	if err != nil {
		return usageError{err}
	}
	// Refuse before probing: nothing is written unless all of it can be.
	if !*force {
		if _, err := os.Lstat(*out); err == nil {
			return usageError{fmt.Errorf("%s exists and is not overwritten; --force replaces it", *out)}
		}
	}
	if *compose != "" {
		if st, err := os.Stat(*compose); err != nil || !st.Mode().IsRegular() {
			return usageError{fmt.Errorf("--compose %s: not an existing compose file", *compose)}
		}
	}

	results := probeServes(context.Background(), targets)
	for _, r := range results {
		fmt.Fprintf(stdout, "%-22s %s\n", r.target.addr(), r.describe())
	}
	tiers := planTiers(results)
	if len(tiers) == 0 {
		return fmt.Errorf("no OpenAI-compatible serve found on %s: start one (vLLM: `vllm serve MODEL --host 127.0.0.1`) or name its port with --ports", describeTargets(targets))
	}
	listen := pickLocalListen(results)
	var plan *composePlan
	if *compose != "" {
		if plan, err = planCompose(*compose, tiers, listen, *force); err != nil {
			return err
		}
	}
	body := renderConfig(tiers, listen)
	// The generated file must validate before it replaces anything.
	if _, err := config.Parse(*out, body); err != nil {
		return fmt.Errorf("generated config does not validate (a bug in init): %w", err)
	}
	if err := writeFileAtomic(*out, body, 0o644, *force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s; anvil-router check:\n", *out)
	// Exactly what `anvil-router check --config OUT` runs.
	if _, err := checkConfig(*out, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nalias → tier (model, port, context):")
	for _, t := range tiers {
		ctx := strconv.Itoa(t.ContextLimit)
		if !t.ContextReported {
			ctx += " (default: the serve did not report max_model_len; edit context_limit)"
		}
		fmt.Fprintf(stdout, "  %s → %s (%s, port %d, context %s)\n", t.Alias, t.ID, t.Model, t.Port, ctx)
	}
	if plan != nil {
		if err := plan.apply(stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "\nnext: put %s in the environment (and TS_AUTHKEY for the first start), then\n  anvil-router serve --config %s\n", initTokenEnv, *out)
	return nil
}

// defaultInitPorts are probed when --ports is not given: vLLM's default
// port 8000 and SGLang's 30000, each with the next three (where a second
// or third serve on the same host usually goes).
var defaultInitPorts = []int{8000, 8001, 8002, 8003, 30000, 30001, 30002, 30003}

const (
	// initDefaultContext is the context_limit written for a serve that does
	// not report max_model_len; the file flags it for the operator.
	initDefaultContext = 8192
	// initTokenEnv names the router token variable ([server].auth_env).
	initTokenEnv = "ANVIL_ROUTER_TOKEN"
	// initProbeTimeout bounds each probe request, dial included.
	initProbeTimeout = 2 * time.Second
	// initMaxBody bounds what a probe reads from a serve.
	initMaxBody = 1 << 20
)

// probeTarget is one loopback address to probe; host is an IP literal.
type probeTarget struct {
	host string
	port int
}

func (p probeTarget) addr() string   { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }
func (p probeTarget) origin() string { return "http://" + p.addr() }

// serveKeyEnv is the variable a tier's auth_env names for the serve on
// port: the serve's API key, if it was started with one. init only writes
// the name; when the variable is set it also uses it to ask the serve.
func serveKeyEnv(port int) string { return "ANVIL_SERVE_KEY_" + strconv.Itoa(port) }

// parseInitPorts reads --ports: plain ports mean 127.0.0.1; host:port must
// name this host's loopback. Host names other than localhost are refused,
// never resolved.
func parseInitPorts(spec string) ([]probeTarget, error) {
	if strings.TrimSpace(spec) == "" {
		out := make([]probeTarget, len(defaultInitPorts))
		for i, p := range defaultInitPorts {
			out[i] = probeTarget{"127.0.0.1", p}
		}
		return out, nil
	}
	var out []probeTarget
	for _, item := range splitList(spec) {
		host, portStr := "127.0.0.1", item
		if strings.ContainsAny(item, ":[") {
			h, p, err := net.SplitHostPort(item)
			if err != nil {
				return nil, fmt.Errorf("--ports: %q is neither a port nor host:port", item)
			}
			host, portStr = h, p
			if strings.EqualFold(host, "localhost") {
				host = "127.0.0.1"
			}
			ip := net.ParseIP(host)
			if ip == nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("--ports: %q is not on this host's loopback: init only probes 127.0.0.0/8, ::1 and localhost, where the serves must listen", item)
			}
			host = ip.String()
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("--ports: %q is not a port (1-65535)", item)
		}
		t := probeTarget{host, port}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func describeTargets(ts []probeTarget) string {
	hosts := map[string][]int{}
	var order []string
	for _, t := range ts {
		if _, ok := hosts[t.host]; !ok {
			order = append(order, t.host)
		}
		hosts[t.host] = append(hosts[t.host], t.port)
	}
	var parts []string
	for _, h := range order {
		parts = append(parts, h+" ports "+joinInts(hosts[h]))
	}
	return strings.Join(parts, "; ")
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// servedModel is one entry of a serve's /v1/models.
type servedModel struct {
	ID          string `json:"id"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
}

// probeResult is what one port answered.
type probeResult struct {
	target   probeTarget
	models   []servedModel
	healthOK bool   // GET /health answered 2xx
	problem  string // why the port yields no tier; "" when it does
}

func (r probeResult) describe() string {
	if r.problem != "" {
		return r.problem
	}
	ids := make([]string, len(r.models))
	for i, m := range r.models {
		ids[i] = m.ID
	}
	health := "no /health (readiness uses /v1/models)"
	if r.healthOK {
		health = "/health ok"
	}
	kind := "OpenAI-compatible serve"
	if e := engineOf(r.models[0]); e != "serve" {
		kind = e + " serve"
	}
	return fmt.Sprintf("%s: %s; %s", kind, strings.Join(ids, ", "), health)
}

// initClient talks only to loopback: no proxy, no redirects, short
// timeouts, and a dialer that refuses any other address even if one slipped
// through.
func initClient() *http.Client {
	dialer := &net.Dialer{
		Timeout: initProbeTimeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("init probes loopback only, not %s", address)
			}
			return nil
		},
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            dialer.DialContext,
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  initProbeTimeout,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       initProbeTimeout,
	}
}

// probeServes asks every target, concurrently, for /v1/models and /health.
// Results are in target order.
func probeServes(ctx context.Context, targets []probeTarget) []probeResult {
	client := initClient()
	results := make([]probeResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { results[i] = probeOne(ctx, client, t) })
	}
	wg.Wait()
	return results
}

func probeOne(ctx context.Context, client *http.Client, t probeTarget) probeResult {
	r := probeResult{target: t}
	body, status, err := probeGet(ctx, client, t.origin()+"/v1/models", os.Getenv(serveKeyEnv(t.port)))
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		r.problem = "nothing listening"
		return r
	case errors.Is(err, errTooLarge):
		r.problem = fmt.Sprintf("/v1/models reply over %d bytes: not used", initMaxBody)
		return r
	case err != nil:
		r.problem = "no answer: " + probeErrText(err)
		return r
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		r.problem = fmt.Sprintf("/v1/models answered %d: the serve wants an API key; export %s and run init again", status, serveKeyEnv(t.port))
		return r
	case status != http.StatusOK:
		r.problem = fmt.Sprintf("/v1/models answered %d: not an OpenAI-compatible serve", status)
		return r
	}
	var list struct {
		Data []servedModel `json:"data"`
	}
	if json.Unmarshal(body, &list) != nil || list.Data == nil {
		r.problem = "/v1/models is not an OpenAI model list: not used"
		return r
	}
	for _, m := range list.Data {
		if strings.TrimSpace(m.ID) != "" && !slices.ContainsFunc(r.models, func(o servedModel) bool { return o.ID == m.ID }) {
			r.models = append(r.models, m)
		}
	}
	if len(r.models) == 0 {
		r.problem = "serve lists no models"
		return r
	}
	_, hs, herr := probeGet(ctx, client, t.origin()+"/health", "")
	r.healthOK = herr == nil && hs >= 200 && hs < 300
	return r
}

var errTooLarge = errors.New("reply too large")

func probeGet(ctx context.Context, client *http.Client, url, key string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, initMaxBody+1))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if len(body) > initMaxBody {
		return nil, resp.StatusCode, errTooLarge
	}
	return body, resp.StatusCode, nil
}

// probeErrText says why a probe failed without the URL net/http puts in
// its errors.
func probeErrText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out after " + initProbeTimeout.String()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return "connection failed"
}

// engineOf names the serve software from owned_by (vLLM and SGLang fill it
// with their name), "serve" for anything else.
func engineOf(m servedModel) string {
	switch strings.ToLower(m.OwnedBy) {
	case "vllm":
		return "vllm"
	case "sglang":
		return "sglang"
	}
	return "serve"
}

// initTier is one tier init writes.
type initTier struct {
	ID, Alias, Model, BaseURL, Engine, HealthPath, AuthEnv string
	Host                                                   string
	Port                                                   int
	ContextLimit                                           int
	ContextReported                                        bool
}

var aliasJunk = regexp.MustCompile(`[^a-z0-9._-]+`)

// shortAlias is a model id's short name as an alias: the part after the
// last "/", trimmed and lowercased as the router normalizes aliases, with
// anything but letters, digits, '.', '_' and '-' made a '-'.
func shortAlias(id string) string {
	s := id[strings.LastIndex(id, "/")+1:]
	s = aliasJunk.ReplaceAllString(strings.ToLower(strings.TrimSpace(s)), "-")
	s = strings.Trim(s, "-.")
	if s == "" {
		return "model"
	}
	return s
}

// planTiers makes one tier per served model, in probe order. Aliases are
// the models' short names; when two collide the later one gets its port
// appended (and then a counter).
func planTiers(results []probeResult) []initTier {
	var tiers []initTier
	used, usedIDs := map[string]bool{}, map[string]bool{}
	for _, r := range results {
		for _, m := range r.models {
			alias := shortAlias(m.ID)
			for n := 1; used[alias]; n++ {
				alias = fmt.Sprintf("%s-%d", shortAlias(m.ID), r.target.port)
				if n > 1 {
					alias += "-" + strconv.Itoa(n)
				}
			}
			used[alias] = true
			t := initTier{
				Alias:           alias,
				Model:           m.ID,
				BaseURL:         r.target.origin() + "/v1",
				Engine:          engineOf(m),
				HealthPath:      "/v1/models",
				AuthEnv:         serveKeyEnv(r.target.port),
				Host:            r.target.host,
				Port:            r.target.port,
				ContextLimit:    m.MaxModelLen,
				ContextReported: m.MaxModelLen > 0,
			}
			// Tier ids say where the serve is; two models on one port with
			// the same short name get a counter.
			base := fmt.Sprintf("%s-%d-%s", engineOf(m), r.target.port, shortAlias(m.ID))
			t.ID = base
			for n := 2; usedIDs[t.ID]; n++ {
				t.ID = base + "-" + strconv.Itoa(n)
			}
			usedIDs[t.ID] = true
			if r.healthOK {
				t.HealthPath = "/health"
			}
			if !t.ContextReported {
				t.ContextLimit = initDefaultContext
			}
			tiers = append(tiers, t)
		}
	}
	return tiers
}

// pickLocalListen is the health-check listener: 127.0.0.1:8080 unless a
// serve was found there, then the next free port.
func pickLocalListen(results []probeResult) string {
	taken := map[int]bool{}
	for _, r := range results {
		if r.problem != "nothing listening" {
			taken[r.target.port] = true
		}
	}
	port := 8080
	for taken[port] {
		port++
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// renderConfig writes the router.toml for tiers. Every secret is named by
// its variable, never written.
func renderConfig(tiers []initTier, localListen string) []byte {
	var b strings.Builder
	b.WriteString(`# Written by ` + "`anvil-router init`" + ` from the serves it found on this host's
# loopback: one tier per served model, one alias per tier (the model's short
# name). Validate after editing: anvil-router check --config FILE
# No secret is in this file: auth_env keys name environment variables.

[server]
auth_env = ` + tomlString(initTokenEnv) + `   # the router token's variable; every caller must send it
local_listen = ` + tomlString(localListen) + `  # loopback /healthz for the container health check

[tailnet]                          # the defaults, written out
hostname = ` + tomlString(config.DefaultHostname) + `
capability = ` + tomlString(config.DefaultCapability) + `
require_grant = false              # true: peers need a grant of capability
https = true
redirect_http = true
# state_dir = "/var/lib/anvil/tailscale"   # TS_STATE_DIR overrides
# advertise_tags = ["tag:anvil"]

[router]
exhaustion_status = 503
`)
	for _, t := range tiers {
		b.WriteString("\n[[router.tiers]]\n")
		fmt.Fprintf(&b, "id = %s\n", tomlString(t.ID))
		fmt.Fprintf(&b, "base_url = %s\n", tomlString(t.BaseURL))
		fmt.Fprintf(&b, "model = %s\n", tomlString(t.Model))
		b.WriteString("dialect = \"openai\"\n")
		if t.ContextReported {
			fmt.Fprintf(&b, "context_limit = %d   # max_model_len reported by the serve\n", t.ContextLimit)
		} else {
			fmt.Fprintf(&b, "# CHECK: the serve did not report max_model_len; %d is init's default.\n", t.ContextLimit)
			fmt.Fprintf(&b, "context_limit = %d\n", t.ContextLimit)
		}
		b.WriteString("privacy = \"local\"\n")
		b.WriteString("tool_support = true   # the serve decides (vLLM needs --enable-auto-tool-choice)\n")
		fmt.Fprintf(&b, "auth_env = %s   # the serve's API key variable; unset: no key is sent\n", tomlString(t.AuthEnv))
		if t.Engine != "serve" {
			fmt.Fprintf(&b, "engine = %s\n", tomlString(t.Engine))
		}
		fmt.Fprintf(&b, "health_path = %s\n", tomlString(t.HealthPath))
		b.WriteString("model_identity = true\n")
	}
	b.WriteString("\n[router.model_routes]\n")
	for _, t := range tiers {
		fmt.Fprintf(&b, "%s = %s\n", tomlString(t.Alias), tomlString(t.ID))
	}
	return []byte(b.String())
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory. Without replace, an existing path is never touched.
func writeFileAtomic(path string, data []byte, perm os.FileMode, replace bool) error {
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return usageError{fmt.Errorf("%s exists and is not overwritten; --force replaces it", path)}
			}
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
