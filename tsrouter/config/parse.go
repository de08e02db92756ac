package config

import (
	"errors"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/pelletier/go-toml/v2"
)

// Defaults of the [router] scalars, the values the anvil-serving router
// format documents, so existing router files mean the same here.
const (
	DefaultExhaustionStatus          = 503
	DefaultRelayTimeout              = 20 * time.Second
	DefaultAvailabilityProbeInterval = 5 * time.Second
	DefaultAvailabilityProbeTimeout  = 1 * time.Second
	DefaultAvailabilityProbeMaxBytes = 65536
	DefaultAudioMaxInputBytes        = backends.DefaultAudioMaxInputBytes
	DefaultAudioMaxOutputBytes       = backends.DefaultAudioMaxOutputBytes
	DefaultAudioMaxTextChars         = backends.DefaultAudioMaxTextChars
	DefaultAudioMaxConcurrency       = backends.DefaultAudioMaxConcurrency
	DefaultQueueTimeout              = backends.DefaultQueueTimeout
	DefaultMaxQueue                  = backends.DefaultMaxQueue
)

var (
	serverKeys = []string{"auth_env", "admission_state_path", "decision_log_path", "local_listen", "local_api"}
	routerKeys = []string{
		"tiers", "model_routes", "exhaustion_status", "exhaustion_retry_after", "relay_timeout",
		"availability_probe_interval", "availability_probe_timeout",
		"availability_probe_max_bytes", "purpose_models", "audio_routes",
		"audio_max_input_bytes", "audio_max_output_bytes",
		"audio_max_text_chars", "audio_max_concurrency",
		"availability_probe_background", "queue_timeout", "hosted_tools",
	}
)

// Load reads and validates the config file at path (a leading ~ is
// expanded) as `check` and `serve` both do: with Parse's rules, and every
// ${NAME} an inline API key uses must be set. Any failure, including an
// unreadable file, is a *Error.
func Load(path string) (*Config, error) {
	path = expandHome(path)
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, &Error{File: path, Problems: []Problem{{Msg: "cannot read config: " + msg}}, cause: err}
	}
	cfg, err := parse(path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse validates a router config document; name is used in messages only.
// It reports every problem it finds, as a *Error, and returns a Config only
// when there are none. Top-level keys other than [server], [router],
// [tailnet], [api_keys], [admin], [acp], [guardrails] and [webui] belong to
// other tools and are ignored.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, nil)
}

// parse is Parse; with env, ${NAME} references in inline API keys must
// resolve too (the values are only checked, never kept).
func parse(name string, data []byte, env func(string) (string, bool)) (*Config, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: name, Problems: []Problem{syntaxProblem(err)}}
	}
	c := &checker{lines: indexLines(data), env: env}
	root := table{c: c, m: doc}
	cfg := &Config{Tailnet: defaultTailnet()}
	if srv, ok := root.sub("server"); ok {
		cfg.Server = parseServer(srv)
	}
	if tn, ok := root.sub("tailnet"); ok {
		cfg.Tailnet = parseTailnet(tn)
	}
	cfg.APIKeys = APIKeys{Mode: "permissive"}
	if k, ok := root.sub("api_keys"); ok {
		cfg.APIKeys = parseAPIKeys(k)
	}
	cfg.Admin = Admin{Stats: DefaultStats()}
	if a, ok := root.sub("admin"); ok {
		cfg.Admin = parseAdmin(a)
	}
	cfg.WebUI = DefaultWebUI()
	if w, ok := root.sub("webui"); ok {
		cfg.WebUI = parseWebUI(w)
	}
	cfg.ACP = DefaultACP()
	if a, ok := root.sub("acp"); ok {
		cfg.ACP = parseACP(a)
	}
	cfg.Guardrails = defaultGuardrails()
	if g, ok := root.sub("guardrails"); ok {
		cfg.Guardrails = parseGuardrails(g)
	}
	if r, ok := root.sub("router"); ok {
		cfg.Router = parseRouter(r)
	} else if !root.has("router") {
		c.report(keyPath{{name: "router"}}, "required table is missing")
	}
	if len(c.problems) > 0 {
		sortProblems(c.problems)
		return nil, &Error{File: name, Problems: c.problems}
	}
	return cfg, nil
}

// syntaxProblem turns a go-toml decode failure into a located problem.
func syntaxProblem(err error) Problem {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return Problem{Msg: "invalid TOML: " + err.Error()}
	}
	line, _ := de.Position()
	var key keyPath
	for _, k := range de.Key() {
		key = key.key(k)
	}
	return Problem{
		Line: line,
		Key:  key.String(),
		Msg:  "invalid TOML: " + strings.TrimPrefix(de.Error(), "toml: "),
	}
}

func parseServer(t table) Server {
	t.unknown(serverKeys, "[server]")
	var s Server
	if t.has("auth_env") {
		s.AuthEnv = t.envName("auth_env")
	}
	s.AdmissionStatePath = t.nonEmptyPath("admission_state_path")
	s.DecisionLogPath = t.nonEmptyPath("decision_log_path")
	if addr, ok := t.str("local_listen"); ok {
		if msg := CheckLoopbackAddr(addr); msg != "" {
			t.c.report(t.path.key("local_listen"), "%s", msg)
		} else {
			s.LocalListen = addr
		}
	}
	s.LocalAPI, _ = t.boolean("local_api")
	if s.LocalAPI && !t.has("local_listen") {
		t.c.report(t.path.key("local_api"), "needs local_listen: there is no loopback listener to serve the API on")
	}
	if s.LocalAPI && !t.has("auth_env") {
		t.c.report(t.path.key("local_api"), "needs auth_env: the loopback listener has no tailnet identity, so every API request there must carry the router token")
	}
	return s
}

// nonEmptyPath reads an optional file path; present means non-empty.
func (t table) nonEmptyPath(key string) string {
	s, ok := t.str(key)
	if !ok {
		return ""
	}
	if strings.TrimSpace(s) == "" {
		t.c.report(t.path.key(key), "must be a non-empty path")
		return ""
	}
	return expandHome(s)
}

func parseRouter(t table) Router {
	t.unknown(routerKeys, "[router]")
	r := Router{
		ExhaustionStatus:          t.intIn("exhaustion_status", 100, 599, DefaultExhaustionStatus),
		ExhaustionRetryAfter:      t.seconds("exhaustion_retry_after", tsrouter.DefaultExhaustionRetryAfter, false),
		RelayTimeout:              t.seconds("relay_timeout", DefaultRelayTimeout, false),
		AvailabilityProbeInterval: t.seconds("availability_probe_interval", DefaultAvailabilityProbeInterval, true),
		AvailabilityProbeTimeout:  t.seconds("availability_probe_timeout", DefaultAvailabilityProbeTimeout, false),
		AvailabilityProbeMaxBytes: t.intIn("availability_probe_max_bytes", 256, 1<<20, DefaultAvailabilityProbeMaxBytes),
		AudioMaxInputBytes:        t.intIn("audio_max_input_bytes", 1024, 32<<20, DefaultAudioMaxInputBytes),
		AudioMaxOutputBytes:       t.intIn("audio_max_output_bytes", 1024, 32<<20, DefaultAudioMaxOutputBytes),
		AudioMaxTextChars:         t.intIn("audio_max_text_chars", 1024, 32<<20, DefaultAudioMaxTextChars),
		AudioMaxConcurrency:       t.intIn("audio_max_concurrency", 1, 16, DefaultAudioMaxConcurrency),
		ProbeInBackground:         true,
		QueueTimeout:              t.seconds("queue_timeout", DefaultQueueTimeout, false),
	}
	if v, ok := t.boolean("availability_probe_background"); ok {
		r.ProbeInBackground = v
	}
	if v, ok := t.str("hosted_tools"); ok {
		switch v {
		case "drop":
		case "refuse":
			r.RefuseHostedTools = true
		default:
			t.c.report(t.path.key("hosted_tools"), `must be "drop" or "refuse"`)
		}
	}

	// Tier, purpose-model and audio-route ids share one namespace.
	ids := map[string]keyPath{}
	// Tiers that claimed a valid id, with where they are written: aliases
	// may target them and the addressability check reports them.
	tierIDs := map[string]bool{}
	var named []Tier
	var namedAt []keyPath
	if tiers, ok := t.tables("tiers"); ok {
		if raw, _ := t.m["tiers"].([]any); len(raw) == 0 {
			t.c.report(t.path.key("tiers"), "[router].tiers is empty: at least one tier is required")
		}
		for _, tt := range tiers {
			tier, idOK := parseTier(tt, ids)
			if idOK {
				tierIDs[tier.ID] = true
				named = append(named, tier)
				namedAt = append(namedAt, tt.path)
			}
			r.Tiers = append(r.Tiers, tier)
		}
	} else if !t.has("tiers") {
		t.c.report(t.path.key("tiers"), "is missing: at least one [[router.tiers]] entry is required")
	}

	if routes, ok := t.sub("model_routes"); ok {
		r.Routes = parseRoutes(routes, tierIDs)
		// Without any working alias every tier would be reported; the
		// model_routes problems already say what to fix.
		if len(r.Routes) > 0 {
			checkAddressable(named, namedAt, r.Routes, t.c)
		}
	} else if !t.has("model_routes") {
		t.c.report(t.path.key("model_routes"), "is missing: [router.model_routes] must map at least one alias to a tier")
	}

	if pms, ok := t.tables("purpose_models"); ok {
		r.PurposeModels = parsePurposeModels(pms, ids)
	}
	if ars, ok := t.tables("audio_routes"); ok {
		r.AudioRoutes = parseAudioRoutes(t, ars, ids)
	}
	return r
}

// expandHome expands a leading "~" or "~/" to the user's home directory;
// other paths (and ~user forms) are returned unchanged.
func expandHome(p string) string { return processEnv.expand(p) }
