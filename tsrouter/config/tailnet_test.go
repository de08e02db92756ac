package config_test

import (
	"reflect"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

func TestTailnetDefaults(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines(), ""))
	want := config.Tailnet{Hostname: "anvil", Capability: config.DefaultCapability, HTTPS: true, RedirectHTTP: true}
	if !reflect.DeepEqual(cfg.Tailnet, want) {
		t.Errorf("got %+v, want %+v", cfg.Tailnet, want)
	}
	if cfg.Server.LocalListen != "" || cfg.Server.LocalAPI {
		t.Errorf("server %+v", cfg.Server)
	}
}

func TestTailnetTable(t *testing.T) {
	text := `[server]
auth_env = "ANVIL_ROUTER_TOKEN"
local_listen = "127.0.0.1:8080"
local_api = true

[tailnet]
hostname = "anvil-gpu1"
state_dir = "/var/lib/anvil/tailscale"
control_url = "https://headscale.example.com"
advertise_tags = ["tag:anvil"]
ephemeral = true
capability = "example.com/cap/llm"
require_grant = true
allow_tags = ["tag:mini", "tag:ci"]
allow_users = ["alice@example.com"]
https = false
redirect_http = false
` + doc("", tierLines(), "")
	cfg := mustParse(t, text)
	want := config.Tailnet{
		Hostname: "anvil-gpu1", StateDir: "/var/lib/anvil/tailscale", ControlURL: "https://headscale.example.com",
		AdvertiseTags: []string{"tag:anvil"}, Ephemeral: true, Capability: "example.com/cap/llm", RequireGrant: true,
		AllowTags: []string{"tag:mini", "tag:ci"}, AllowUsers: []string{"alice@example.com"},
	}
	if !reflect.DeepEqual(cfg.Tailnet, want) {
		t.Errorf("got %+v\nwant %+v", cfg.Tailnet, want)
	}
	if cfg.Server.LocalListen != "127.0.0.1:8080" || !cfg.Server.LocalAPI {
		t.Errorf("server %+v", cfg.Server)
	}
}

func TestTailnetProblems(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		wants []want
	}{
		{"unknown key", "[tailnet]\nhostnme = \"x\"\n", []want{{"tailnet.hostnme", "hostnme", "unknown field in [tailnet]"}}},
		{"hostname not a DNS label", "[tailnet]\nhostname = \"anvil.local\"\n", []want{{"tailnet.hostname", "hostname", "DNS label"}}},
		{"control url scheme", "[tailnet]\ncontrol_url = \"headscale:8080\"\n", []want{{"tailnet.control_url", "control_url", "http:// or https://"}}},
		{"bad tag", "[tailnet]\nadvertise_tags = [\"anvil\"]\n", []want{{"tailnet.advertise_tags[0]", "advertise_tags", "tag:name"}}},
		{"tags not a list", "[tailnet]\nallow_tags = \"tag:a\"\n", []want{{"tailnet.allow_tags", "allow_tags", "array of strings"}}},
		{"empty user", "[tailnet]\nallow_users = [\"\"]\n", []want{{"tailnet.allow_users[0]", "allow_users", "non-empty"}}},
		{"capability not domain-shaped", "[tailnet]\ncapability = \"router\"\n", []want{{"tailnet.capability", "capability", "domain-shaped"}}},
		{"capability in tailscale.com", "[tailnet]\ncapability = \"tailscale.com/cap/router\"\n", []want{{"tailnet.capability", "capability", "tailscale.com"}}},
		{"require_grant not bool", "[tailnet]\nrequire_grant = 1\n", []want{{"tailnet.require_grant", "require_grant", "true or false"}}},
		{"local listen on all interfaces", "[server]\nlocal_listen = \"0.0.0.0:8080\"\n", []want{{"server.local_listen", "local_listen", "loopback"}}},
		{"local listen on a LAN address", "[server]\nlocal_listen = \"192.0.2.1:8080\"\n", []want{{"server.local_listen", "local_listen", "loopback"}}},
		{"local api without listener or token", "[server]\nlocal_api = true\n", []want{
			{"server.local_api", "local_api", "needs local_listen"},
			{"server.local_api", "local_api", "needs auth_env"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, c.text+doc("", tierLines(), ""), c.wants) })
	}
}
