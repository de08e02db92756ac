package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// What the router service init adds to a compose file uses; the image
// (Dockerfile) agrees on the paths.
const (
	composeRouterName   = "router"
	composeConfigName   = "router-toml"
	composeStateVolume  = "anvil-state"
	routerImage         = "anvil-router:${ANVIL_VERSION:-dev}"
	routerImageBinary   = "/usr/local/bin/anvil-router"
	routerImageConfig   = "/etc/anvil/router.toml"
	routerImageStateVol = "/var/lib/anvil"
)

// blankMarker stands in for blank lines while the file is a yaml.Node
// tree: the YAML library keeps comments but drops blank lines, so they
// are carried through as comments and turned back afterwards.
const blankMarker = "#anvil-init-blank-line"

var blankMarkerLine = regexp.MustCompile(`(?m)^[ \t]*` + blankMarker + `$`)

// markBlankLines replaces each blank line with blankMarker, indented like
// the next non-blank line (so it never ends a block scalar early).
func markBlankLines(raw []byte) []byte {
	lines := strings.Split(string(raw), "\n")
	for i := range lines[:len(lines)-1] {
		if strings.TrimSpace(lines[i]) != "" {
			continue
		}
		indent := ""
		for _, next := range lines[i+1:] {
			if strings.TrimSpace(next) != "" {
				indent = next[:len(next)-len(strings.TrimLeft(next, " \t"))]
				break
			}
		}
		lines[i] = indent + blankMarker
	}
	return []byte(strings.Join(lines, "\n"))
}

// composeView is what init reads from the compose file to place the router.
type composeView struct {
	Services map[string]struct {
		Image       string      `yaml:"image"`
		NetworkMode string      `yaml:"network_mode"`
		Networks    yaml.Node   `yaml:"networks"`
		Ports       []yaml.Node `yaml:"ports"`
		Command     yaml.Node   `yaml:"command"`
		Entrypoint  yaml.Node   `yaml:"entrypoint"`
	} `yaml:"services"`
	Networks map[string]*struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
}

// composePlan is the edited compose file, ready to be written.
type composePlan struct {
	path      string
	out       []byte // the whole file, edited
	snippet   []byte // only what was added, for an unwritable file
	placement string
}

// planCompose adds the router service, its config (inline) and the state
// volume to the compose file at path, keeping everything else — order,
// comments, anchors — as it was. An existing router service or config is
// replaced only with force. Nothing is written yet.
func planCompose(path string, tiers []initTier, localListen string, force bool) (*composePlan, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(markBlankLines(raw), &doc); err != nil {
		return nil, usageError{fmt.Errorf("--compose %s: %w", path, err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, usageError{fmt.Errorf("--compose %s: not a compose file (no top-level mapping)", path)}
	}
	root := doc.Content[0]
	var view composeView
	if err := doc.Decode(&view); err != nil {
		return nil, usageError{fmt.Errorf("--compose %s: %w", path, err)}
	}
	services := mappingValue(root, "services")
	if services == nil || services.Kind != yaml.MappingNode {
		return nil, usageError{fmt.Errorf("--compose %s: has no services: mapping", path)}
	}
	if !force {
		if mappingValue(services, composeRouterName) != nil {
			return nil, usageError{fmt.Errorf("--compose %s already has a service %q; --force replaces it", path, composeRouterName)}
		}
		if cf := mappingValue(root, "configs"); cf != nil && mappingValue(cf, composeConfigName) != nil {
			return nil, usageError{fmt.Errorf("--compose %s already has a config %q; --force replaces it", path, composeConfigName)}
		}
	}

	placed, networks := placeTiers(view, tiers)
	content := renderConfig(placed, localListen)
	if _, err := config.Parse(path+": configs."+composeConfigName, content); err != nil {
		return nil, fmt.Errorf("router config for the compose file does not validate (a bug in init): %w", err)
	}
	svc := routerServiceNode(placed, networks)

	// What is added, also printed when the file cannot be written.
	added := &yaml.Node{Kind: yaml.MappingNode}
	setMapping(ensureMapping(added, "services"), composeRouterName, svc,
		blankMarker+"\n# anvil-router, added by `anvil-router init`: joins the tailnet as the node\n"+
			"# anvil (clients use http://anvil/v1) and publishes no port. Put TS_AUTHKEY (first\n"+
			"# start only) and ANVIL_ROUTER_TOKEN in .env next to this file.")
	setMapping(ensureMapping(added, "configs"), composeConfigName, mappingNode("content", literal(string(content))), "")

	setMapping(services, composeRouterName, svc, mappingKeyComment(added, "services", composeRouterName))
	setMapping(ensureMapping(root, "configs"), composeConfigName, mappingNode("content", literal(string(content))), "")
	if vols := ensureMapping(root, "volumes"); mappingValue(vols, composeStateVolume) == nil {
		setMapping(vols, composeStateVolume, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}, "")
		setMapping(ensureMapping(added, "volumes"), composeStateVolume, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}, "")
	}
	for _, n := range networks {
		nets := ensureMapping(root, "networks")
		if n.declare && mappingValue(nets, n.name) == nil {
			setMapping(nets, n.name, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}, "# the router's way to the control server, DERP relays and peers")
			setMapping(ensureMapping(added, "networks"), n.name, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}, "")
		}
	}

	out, err := encodeYAML(&doc)
	if err != nil {
		return nil, err
	}
	snippet, err := encodeYAML(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{added}})
	if err != nil {
		return nil, err
	}
	return &composePlan{path: path, out: out, snippet: snippet, placement: describePlacement(networks)}, nil
}

// apply writes the edited file in place (same inode, owner and mode), or,
// when the file is not writable, prints what to add to it.
func (p *composePlan) apply(stdout io.Writer) error {
	f, err := os.OpenFile(p.path, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(stdout, "\n%s is not writable (%s); add this to it (router on the %s):\n\n%s", p.path, errText(err), p.placement, p.snippet)
		return nil
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(p.out); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nadded the %s service and its config to %s (router on the %s)\n", composeRouterName, p.path, p.placement)
	fmt.Fprintf(stdout, "the service runs the image %s: build it from the anvil-router repository first (docker build -t anvil-router:dev .)\n", routerImage)
	return nil
}

func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// routerNetwork is a network the router service joins; declare means init
// must add it to the top-level networks.
type routerNetwork struct {
	name    string
	declare bool
}

func describePlacement(nets []routerNetwork) string {
	if len(nets) == 0 {
		return "host network, calling the serves' loopback ports"
	}
	names := make([]string, len(nets))
	for i, n := range nets {
		names[i] = n.name
	}
	return "networks " + strings.Join(names, ", ")
}

// placeTiers decides how the router container reaches the serves. When
// every tier's serve is a compose service on a network, the router joins
// those networks and calls each serve by service name and container port
// (plus a network with a route out, for the tailnet). Otherwise the router
// runs on the host network, where the loopback addresses init probed are
// exactly right. It returns the tiers with their base URLs for the
// container and the router's networks (none: host network).
func placeTiers(view composeView, tiers []initTier) ([]initTier, []routerNetwork) {
	placed := slices.Clone(tiers)
	var nets []string
	for i, t := range tiers {
		name, port, ok := matchServeService(view, t)
		if !ok {
			return slices.Clone(tiers), nil
		}
		s := view.Services[name]
		if s.NetworkMode != "" {
			return slices.Clone(tiers), nil
		}
		sn := nodeNames(&s.Networks)
		if len(sn) == 0 {
			sn = []string{"default"}
		}
		for _, n := range sn {
			if !slices.Contains(nets, n) {
				nets = append(nets, n)
			}
		}
		placed[i].BaseURL = "http://" + name + ":" + strconv.Itoa(port) + "/v1"
	}
	out := make([]routerNetwork, len(nets))
	egress := false
	for i, n := range nets {
		out[i] = routerNetwork{name: n}
		if decl, ok := view.Networks[n]; !ok || decl == nil || !decl.Internal {
			egress = true
		}
	}
	if !egress {
		name := "egress"
		if decl, ok := view.Networks[name]; ok && decl != nil && decl.Internal {
			name = "anvil-egress"
		}
		out = append(out, routerNetwork{name: name, declare: true})
	}
	return placed, out
}

// matchServeService finds the compose service behind a tier: the one that
// publishes the tier's port, else the one whose command names the tier's
// model (vLLM's --served-model-name or --model, SGLang's --model-path).
// Only an unambiguous match counts. The container port is the published
// mapping's target, else the command's --port, else the engine's default.
func matchServeService(view composeView, t initTier) (string, int, bool) {
	names := make([]string, 0, len(view.Services))
	for name, s := range view.Services {
		if !strings.Contains(s.Image, "anvil-router") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	type hit struct {
		name string
		port int
	}
	var published, named []hit
	for _, name := range names {
		s := view.Services[name]
		for _, p := range s.Ports {
			if host, target, ok := portMapping(&p); ok && host == t.Port {
				published = append(published, hit{name, target})
			}
		}
		args := append(commandWords(&s.Entrypoint), commandWords(&s.Command)...)
		if slices.ContainsFunc(args, func(a string) bool { return a == t.Model || strings.HasSuffix(a, "="+t.Model) }) {
			port := flagPort(args)
			switch {
			case port > 0:
			case s.NetworkMode == "host":
				port = t.Port
			case strings.Contains(s.Image, "sglang"):
				port = 30000
			default:
				port = 8000 // vLLM's default
			}
			named = append(named, hit{name, port})
		}
	}
	if len(published) == 1 {
		return published[0].name, published[0].port, true
	}
	if len(published) == 0 && len(named) == 1 {
		return named[0].name, named[0].port, true
	}
	return "", 0, false
}

// portMapping reads one ports: entry, short ("127.0.0.1:8000:8000",
// "8000:8000/tcp") or long syntax; ok is false when nothing is published.
func portMapping(n *yaml.Node) (host, target int, ok bool) {
	if n.Kind == yaml.MappingNode {
		target, _ = strconv.Atoi(valueOf(n, "target"))
		host, _ = strconv.Atoi(valueOf(n, "published"))
		return host, target, host > 0 && target > 0
	}
	parts := strings.Split(strings.SplitN(n.Value, "/", 2)[0], ":")
	if len(parts) < 2 {
		return 0, 0, false
	}
	host, err1 := strconv.Atoi(parts[len(parts)-2])
	target, err2 := strconv.Atoi(parts[len(parts)-1])
	return host, target, err1 == nil && err2 == nil
}

func valueOf(m *yaml.Node, key string) string {
	if v := mappingValue(m, key); v != nil {
		return v.Value
	}
	return ""
}

// commandWords are a command's words: a list, or a string split on
// blanks (enough to find flags and model names).
func commandWords(n *yaml.Node) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strings.Fields(n.Value)
	case yaml.SequenceNode:
		out := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
		return out
	}
	return nil
}

func flagPort(args []string) int {
	for i, a := range args {
		v, found := strings.CutPrefix(a, "--port=")
		if !found && a == "--port" && i+1 < len(args) {
			v, found = args[i+1], true
		}
		if p, err := strconv.Atoi(v); found && err == nil {
			return p
		}
	}
	return 0
}

// nodeNames are a service's networks, list or mapping form.
func nodeNames(n *yaml.Node) []string {
	var out []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
	}
	return out
}

// routerServiceNode is the router service: the image, restart policy,
// state volume, config, health check and hardening of the repository's own
// compose file, no ports, on nets (or the host network).
func routerServiceNode(tiers []initTier, nets []routerNetwork) *yaml.Node {
	env := mappingNode(
		"TS_AUTHKEY", str("${TS_AUTHKEY:-}"),
		"TS_HOSTNAME", str(config.DefaultHostname),
		"TS_ADVERTISE_TAGS", str("${TS_ADVERTISE_TAGS:-}"),
		"TS_CONTROL_URL", str("${TS_CONTROL_URL:-}"),
		initTokenEnv, str("${"+initTokenEnv+":?put "+initTokenEnv+" in .env}"),
	)
	var keyEnvs []string
	for _, t := range tiers {
		if !slices.Contains(keyEnvs, t.AuthEnv) {
			keyEnvs = append(keyEnvs, t.AuthEnv)
			setMapping(env, t.AuthEnv, str("${"+t.AuthEnv+":-}"), "")
		}
	}
	test := seq(str("CMD"), str(routerImageBinary), str("healthcheck"), str("--config"), str(routerImageConfig))
	test.Style = yaml.FlowStyle
	svc := mappingNode(
		"image", str(routerImage),
		"restart", str("unless-stopped"),
		"environment", env,
		"volumes", seq(str(composeStateVolume+":"+routerImageStateVol)),
		"configs", seq(mappingNode("source", str(composeConfigName), "target", str(routerImageConfig))),
		"read_only", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"},
		"tmpfs", seq(str("/tmp")),
		"cap_drop", seq(str("ALL")),
		"security_opt", seq(str("no-new-privileges:true")),
		"stop_grace_period", str("30s"),
		"healthcheck", mappingNode(
			"test", test,
			"interval", str("30s"),
			"timeout", str("5s"),
			"start_period", str("60s"),
			"retries", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "3"},
		),
	)
	if len(nets) == 0 {
		setMapping(svc, "network_mode", str("host"), "")
	} else {
		list := seq()
		for _, n := range nets {
			list.Content = append(list.Content, str(n.name))
		}
		setMapping(svc, "networks", list, "")
	}
	return svc
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func literal(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.LiteralStyle}
}

func seq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: items}
}

// mappingNode builds a mapping from key, value, key, value….
func mappingNode(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Content = append(m.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

// mappingValue returns the value under key in mapping m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mappingKeyComment(m *yaml.Node, outer, key string) string {
	o := mappingValue(m, outer)
	for i := 0; o != nil && i+1 < len(o.Content); i += 2 {
		if o.Content[i].Value == key {
			return o.Content[i].HeadComment
		}
	}
	return ""
}

// setMapping replaces the value under key in place (the key and its
// comments stay), or appends key with comment.
func setMapping(m *yaml.Node, key string, v *yaml.Node, comment string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	k := str(key)
	k.HeadComment = comment
	m.Content = append(m.Content, k, v)
}

// ensureMapping returns the block mapping under key in m, adding an empty
// one (or turning an empty value such as "volumes:" into one) as needed.
func ensureMapping(m *yaml.Node, key string) *yaml.Node {
	if v := mappingValue(m, key); v != nil {
		if v.Kind != yaml.MappingNode {
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: v.HeadComment, LineComment: v.LineComment}
		}
		v.Style = 0
		return v
	}
	v := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	setMapping(m, key, v, blankMarker)
	return v
}

// clearMergeTags undoes the YAML library's habit of writing merge keys as
// "!!merge <<".
func clearMergeTags(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!merge" {
		n.Tag = ""
	}
	for _, c := range n.Content {
		clearMergeTags(c)
	}
}

func encodeYAML(doc *yaml.Node) ([]byte, error) {
	clearMergeTags(doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return blankMarkerLine.ReplaceAll(b.Bytes(), nil), nil
}
