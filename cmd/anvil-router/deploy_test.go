package main

// Static checks of the container deployment (issue 7), runnable without a
// Docker engine: the invariants of compose.yaml and the Dockerfile, and the
// binary built exactly as the Dockerfile builds it.

import (
	"debug/buildinfo"
	"debug/elf"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// dockerfileBuild is the build stage's command, verbatim: the Dockerfile
// must contain it and TestDockerfileBinary runs it.
const dockerfileBuild = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/anvil-router ./cmd/anvil-router`

// Paths the image, the compose file and the README agree on.
const (
	imageBinary   = "/usr/local/bin/anvil-router"
	imageConfig   = "/etc/anvil/router.toml"
	imageStateVol = "/var/lib/anvil"
	imageStateDir = "/var/lib/anvil/tailscale"
)

// repoRoot is the module root (the Docker build context).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

// composeFile is the part of the compose specification the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
	Configs map[string]struct {
		Content string `yaml:"content"`
		File    string `yaml:"file"`
	} `yaml:"configs"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Restart     string            `yaml:"restart"`
	Ports       []any             `yaml:"ports"`
	NetworkMode string            `yaml:"network_mode"`
	Networks    []string          `yaml:"networks"`
	Profiles    []string          `yaml:"profiles"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	Configs     []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func loadCompose(t *testing.T) (composeFile, []byte) {
	t.Helper()
	return loadComposeFile(t, filepath.Join(repoRoot(t), "compose.yaml"))
}

func loadComposeFile(t *testing.T, path string) (composeFile, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose.yaml has no services")
	}
	return c, raw
}

// routers are the services that run the anvil-router image.
func routers(c composeFile) []string {
	var names []string
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "anvil-router") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// secretName says which environment variables hold secrets.
var secretName = regexp.MustCompile(`(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)`)

// interpolated matches a value taken from the operator's environment or
// .env file: ${NAME}, ${NAME:-default} or ${NAME:?message}.
var interpolated = regexp.MustCompile(`^\$\{([A-Z_][A-Z0-9_]*)(:?[-?][^}]*)?\}$`)

// TestComposeInvariants: the deployment publishes nothing, restarts by
// itself, keeps the node's state on a volume, health-checks the router and
// carries no secret.
func TestComposeInvariants(t *testing.T) {
	c, raw := loadCompose(t)
	checkComposeInvariants(t, c, raw)
}

// checkComposeInvariants holds a compose file to the invariants of the
// repository's own (`anvil-router init --compose` output is held to them too).
func checkComposeInvariants(t *testing.T, c composeFile, raw []byte) {
	t.Helper()
	rs := routers(c)
	if !slices.Equal(rs, []string{"router", "router-host"}) {
		t.Fatalf("router services %v, want [router router-host]", rs)
	}

	t.Run("no service publishes a port", func(t *testing.T) {
		for name, s := range c.Services {
			if len(s.Ports) > 0 {
				t.Errorf("%s publishes ports %v", name, s.Ports)
			}
		}
	})
	t.Run("every service restarts unless stopped", func(t *testing.T) {
		for name, s := range c.Services {
			if s.Restart != "unless-stopped" {
				t.Errorf("%s: restart %q", name, s.Restart)
			}
		}
	})
	t.Run("serves are only on internal networks", func(t *testing.T) {
		for name, s := range c.Services {
			if slices.Contains(rs, name) {
				continue
			}
			if s.NetworkMode != "" || len(s.Networks) == 0 {
				t.Errorf("%s: network_mode %q networks %v, want only internal networks", name, s.NetworkMode, s.Networks)
			}
			for _, n := range s.Networks {
				if !c.Networks[n].Internal {
					t.Errorf("%s is on network %q, which is not internal", name, n)
				}
			}
		}
	})
	t.Run("the router shares an internal network with the serves", func(t *testing.T) {
		s := c.Services["router"]
		if s.NetworkMode != "" {
			t.Errorf("router: network_mode %q", s.NetworkMode)
		}
		shared := false
		for _, n := range s.Networks {
			shared = shared || c.Networks[n].Internal
		}
		if !shared {
			t.Errorf("router networks %v: none is internal", s.Networks)
		}
	})
	t.Run("the host-network variant is opt-in", func(t *testing.T) {
		s := c.Services["router-host"]
		if s.NetworkMode != "host" || len(s.Profiles) == 0 || len(s.Networks) > 0 {
			t.Errorf("router-host: network_mode %q profiles %v networks %v, want host, a profile, no networks", s.NetworkMode, s.Profiles, s.Networks)
		}
	})
	for _, name := range rs {
		checkRouterService(t, name, c)
	}
	t.Run("no secret literals", func(t *testing.T) {
		for name, s := range c.Services {
			for k, v := range s.Environment {
				if secretName.MatchString(k) && v != "" {
					if m := interpolated.FindStringSubmatch(v); m == nil || m[1] != k {
						t.Errorf("%s: %s has a literal value; take it from the environment as ${%s}", name, k, k)
					}
				}
			}
		}
		// Anything that looks like a real credential, comments included.
		for _, re := range []*regexp.Regexp{
			regexp.MustCompile(`tskey-[a-z]+-[A-Za-z0-9]{6,}`),
			regexp.MustCompile(`hf_[A-Za-z0-9]{20,}`),
			regexp.MustCompile(`(?i)bearer [A-Za-z0-9._-]{16,}`),
		} {
			if m := re.Find(raw); m != nil {
				t.Errorf("compose.yaml contains what looks like a credential: %q", m)
			}
		}
	})
}

// checkRouterService holds one anvil-router service to the invariants: the
// state volume, the binary's health check, hardening, enrolment from the
// environment and a valid config that reaches its serves.
func checkRouterService(t *testing.T, name string, c composeFile) {
	t.Helper()
	s := c.Services[name]
	t.Run(name+" keeps its state on a named volume", func(t *testing.T) {
		want := "anvil-state:" + imageStateVol
		if !slices.Contains(s.Volumes, want) {
			t.Errorf("volumes %v lack %q", s.Volumes, want)
		}
		if _, ok := c.Volumes["anvil-state"]; !ok {
			t.Error("volume anvil-state is not declared")
		}
		for _, v := range s.Volumes {
			if strings.HasPrefix(v, "/") || strings.HasPrefix(v, ".") {
				t.Errorf("bind mount %q: the router needs only the state volume and its config", v)
			}
		}
	})
	t.Run(name+" is health-checked by the binary", func(t *testing.T) {
		want := []string{"CMD", imageBinary, "healthcheck", "--config", imageConfig}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, want) {
			t.Errorf("healthcheck %+v, want test %q", s.Healthcheck, want)
		}
	})
	t.Run(name+" runs hardened", func(t *testing.T) {
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("read_only %v cap_drop %v, want true and ALL", s.ReadOnly, s.CapDrop)
		}
		if s.StopGracePeriod == "" {
			t.Error("no stop_grace_period: docker's default 10s cuts the 20s drain short")
		}
	})
	t.Run(name+" enrols from the environment", func(t *testing.T) {
		if m := interpolated.FindStringSubmatch(s.Environment["TS_AUTHKEY"]); m == nil || m[1] != "TS_AUTHKEY" {
			t.Errorf("TS_AUTHKEY = %q, want ${TS_AUTHKEY...}", s.Environment["TS_AUTHKEY"])
		}
		// Tags come with the key; advertising them is opt-in (OAuth).
		if m := interpolated.FindStringSubmatch(s.Environment["TS_ADVERTISE_TAGS"]); m == nil || m[1] != "TS_ADVERTISE_TAGS" {
			t.Errorf("TS_ADVERTISE_TAGS = %q, want ${TS_ADVERTISE_TAGS...}", s.Environment["TS_ADVERTISE_TAGS"])
		}
	})
	t.Run(name+" mounts a valid config read-only", func(t *testing.T) {
		if len(s.Configs) != 1 || s.Configs[0].Target != imageConfig {
			t.Fatalf("configs %+v, want one at %s", s.Configs, imageConfig)
		}
		src := c.Configs[s.Configs[0].Source]
		if src.Content == "" {
			t.Fatalf("config %q has no inline content", s.Configs[0].Source)
		}
		checkRouterConfig(t, src.Content, s, c)
	})
}

// checkRouterConfig validates an inline router.toml with the real binary
// and checks it against its service: a loopback health listener, and tiers
// that are reachable from where the service runs.
func checkRouterConfig(t *testing.T, content string, s composeService, c composeFile) {
	t.Helper()
	path := writeConfig(t, content)
	cmd := exec.CommandContext(t.Context(), binary, "check", "--config", path)
	cmd.Env = append(os.Environ(), "ANVIL_SERVING_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("anvil-router check: %v\n%s", err, out)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.LocalListen == "" {
		t.Error("no [server].local_listen: the health check has nothing to ask")
	}
	if cfg.Server.AuthEnv != "" {
		if v := s.Environment[cfg.Server.AuthEnv]; !interpolated.MatchString(v) {
			t.Errorf("auth_env %s is not passed from the environment (%q)", cfg.Server.AuthEnv, v)
		}
	}
	if cfg.Tailnet.StateDir != "" && cfg.Tailnet.StateDir != imageStateDir {
		t.Errorf("[tailnet].state_dir %q is not on the state volume", cfg.Tailnet.StateDir)
	}
	for _, tier := range cfg.Router.Tiers {
		u, err := url.Parse(tier.BaseURL)
		if err != nil {
			t.Fatal(err)
		}
		host := u.Hostname()
		if s.NetworkMode == "host" {
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				t.Errorf("tier %s: %s is not on the host's loopback", tier.ID, tier.BaseURL)
			}
			continue
		}
		serve, ok := c.Services[host]
		if !ok {
			t.Errorf("tier %s: %s names no compose service", tier.ID, tier.BaseURL)
			continue
		}
		shared := false
		for _, n := range serve.Networks {
			shared = shared || slices.Contains(s.Networks, n)
		}
		if !shared {
			t.Errorf("tier %s: the router shares no network with %s", tier.ID, host)
		}
	}
}

// dockerfileInstructions returns the Dockerfile's instructions with line
// continuations joined and comments dropped.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		cur += trimmed
		if cur != "" {
			out = append(out, cur)
		}
		cur = ""
	}
	return out
}

// TestDockerfileInvariants: a multi-stage build of a static binary into a
// non-root runtime image with the state on a volume and a health check.
func TestDockerfileInvariants(t *testing.T) {
	ins := dockerfileInstructions(t)
	var froms []string
	var runtime []string // instructions of the last stage
	for _, in := range ins {
		if strings.HasPrefix(in, "FROM ") {
			froms = append(froms, in)
			runtime = nil
		}
		runtime = append(runtime, in)
	}
	has := func(list []string, prefix string) string {
		for _, in := range list {
			if strings.HasPrefix(in, prefix) {
				return in
			}
		}
		return ""
	}
	tests := []struct {
		name string
		ok   func() bool
	}{
		{"two stages: Go builder and runtime", func() bool {
			return len(froms) == 2 && strings.HasPrefix(froms[0], "FROM golang:") && strings.Contains(froms[0], " AS build")
		}},
		{"the runtime is distroless static, non-root variant", func() bool {
			return strings.HasPrefix(froms[len(froms)-1], "FROM gcr.io/distroless/static") && strings.HasSuffix(froms[len(froms)-1], ":nonroot")
		}},
		{"the build stage builds as the test does", func() bool {
			return slices.ContainsFunc(ins, func(in string) bool { return strings.HasSuffix(in, dockerfileBuild) })
		}},
		{"the runtime runs as a non-root user", func() bool {
			u := has(runtime, "USER ")
			return u != "" && !strings.HasPrefix(u, "USER 0") && !strings.HasPrefix(u, "USER root")
		}},
		{"the state dir is handed to that user", func() bool {
			return slices.ContainsFunc(runtime, func(in string) bool {
				return strings.HasPrefix(in, "COPY --from=build --chown=65532:65532 ") && strings.HasSuffix(in, " "+imageStateVol+"/")
			}) && strings.HasPrefix(has(runtime, "USER "), "USER 65532")
		}},
		{"the state dir is a volume and TS_STATE_DIR points into it", func() bool {
			return has(runtime, "VOLUME ") == `VOLUME ["`+imageStateVol+`"]` && strings.Contains(has(runtime, "ENV "), "TS_STATE_DIR="+imageStateDir+" ")
		}},
		{"the health check is the binary's healthcheck on the config's local listener", func() bool {
			return strings.HasSuffix(has(runtime, "HEALTHCHECK "), `CMD ["`+imageBinary+`", "healthcheck", "--config", "`+imageConfig+`"]`)
		}},
		{"entrypoint is the binary, command serves the mounted config", func() bool {
			return has(runtime, "ENTRYPOINT ") == `ENTRYPOINT ["`+imageBinary+`"]` && has(runtime, "CMD ") == `CMD ["serve", "--config", "`+imageConfig+`"]`
		}},
		{"no port is exposed", func() bool { return has(ins, "EXPOSE ") == "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok() {
				t.Errorf("Dockerfile:\n%s", strings.Join(ins, "\n"))
			}
		})
	}

	t.Run(".dockerignore keeps secrets, state and VCS data out of the context", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join(repoRoot(t), ".dockerignore"))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(string(raw))
		for _, want := range []string{".git", ".env", "*.env", "router.toml"} {
			if !slices.Contains(lines, want) {
				t.Errorf(".dockerignore lacks %q", want)
			}
		}
	})
}

// TestDockerfileBinary builds the binary the way the Dockerfile does and
// checks what the image relies on: static, stamped, and a health check that
// works as a non-root user.
func TestDockerfileBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const version = "v0.0.0-deploytest"
	// A directory every user can traverse: the binary runs as nobody below.
	dir, err := os.MkdirTemp("", "anvil-deploy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "anvil-router")

	// The Dockerfile's command with ${VERSION} and the output path filled in.
	line := strings.NewReplacer("${VERSION}", version, "/out/anvil-router", bin).Replace(dockerfileBuild)
	env, argv := splitEnvArgv(t, line)
	build := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image binary: %.1f MiB (%d bytes)", float64(st.Size())/(1<<20), st.Size())

	t.Run("statically linked", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("has a program interpreter (dynamically linked)")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("needs shared libraries %v", libs)
		}
	})
	t.Run("built with CGO off, trimmed paths, the version stamped", func(t *testing.T) {
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
			t.Errorf("build settings %v", settings)
		}
		// -trimpath keeps -ldflags out of the build info: ask the binary.
		out, err := exec.CommandContext(t.Context(), bin, "version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "anvil-router "+version {
			t.Errorf("version: %q %v", out, err)
		}
	})

	t.Run("healthcheck as a non-root user", func(t *testing.T) {
		healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			w.Write([]byte(`{"status":"ok"}`))
		}))
		defer healthy.Close()
		sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer sick.Close()
		addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
		// The image's form: the address comes from the mounted config.
		cfg := filepath.Join(dir, "router.toml")
		if err := os.WriteFile(cfg, []byte("[server]\nlocal_listen = \""+addr(healthy)+"\"\n"+tierConfig("http://127.0.0.1:9")[len("\n[server]\nauth_env = \"ANVIL_TEST_ROUTER_TOKEN\"\n"):]), 0o644); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name     string
			args     []string
			wantCode int
		}{
			{"healthy listener from the config, as in the image", []string{"--config", cfg}, 0},
			{"healthy listener by address", []string{"--addr", addr(healthy)}, 0},
			{"listener answering 503", []string{"--addr", addr(sick)}, 1},
			{"nothing listening", []string{"--addr", freePort(t)}, 1},
			{"a non-loopback address is refused", []string{"--addr", "192.0.2.1:8080"}, 2},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				cmd := exec.CommandContext(t.Context(), bin, append([]string{"healthcheck", "--timeout", "2s"}, tc.args...)...)
				cmd.Dir = "/"
				cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
				asNobody(t, cmd)
				out, _ := cmd.CombinedOutput()
				if code := cmd.ProcessState.ExitCode(); code != tc.wantCode {
					t.Errorf("exit %d, want %d\n%s", code, tc.wantCode, out)
				}
			})
		}
	})
}

// asNobody runs cmd as nobody (65534) when the test runs as root; otherwise
// the test user already is not root.
func asNobody(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
}

// splitEnvArgv splits a shell-like command line with leading VAR=value
// words and double-quoted arguments (enough for dockerfileBuild).
func splitEnvArgv(t *testing.T, line string) (env, argv []string) {
	t.Helper()
	var words []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) == 0 {
		t.Fatalf("no command in %q", line)
	}
	return env, words
}
