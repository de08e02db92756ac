package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// sandbox points HOME, the working directory and the config variables at
// fresh temporary directories and returns them.
func sandbox(t *testing.T) (home, cwd string) {
	t.Helper()
	home, cwd = t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("ANVIL_CONFIG", "")
	t.Setenv("ANVIL_SERVING_HOME", "")
	t.Chdir(cwd)
	return home, cwd
}

func touch(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDiscover(t *testing.T) {
	cases := []struct {
		name string
		// setup prepares files and variables and returns the flag value
		// and the path Discover must pick.
		setup func(t *testing.T, home, cwd string) (flag, want string)
	}{
		{"flag wins even if missing", func(t *testing.T, home, cwd string) (string, string) {
			t.Setenv("ANVIL_CONFIG", "/etc/anvil/config.toml")
			touch(t, filepath.Join(cwd, "router.toml"), "")
			return "/nowhere/router.toml", "/nowhere/router.toml"
		}},
		{"flag tilde expanded", func(t *testing.T, home, cwd string) (string, string) {
			return "~/conf/r.toml", filepath.Join(home, "conf/r.toml")
		}},
		{"ANVIL_CONFIG next", func(t *testing.T, home, cwd string) (string, string) {
			t.Setenv("ANVIL_CONFIG", "/etc/anvil/config.toml")
			touch(t, filepath.Join(home, ".anvil-serving/router.toml"), "")
			return "", "/etc/anvil/config.toml"
		}},
		{"ANVIL_SERVING_HOME file", func(t *testing.T, home, cwd string) (string, string) {
			srv := filepath.Join(home, "srv")
			t.Setenv("ANVIL_SERVING_HOME", srv)
			touch(t, filepath.Join(srv, "router.toml"), "")
			touch(t, filepath.Join(cwd, "router.toml"), "")
			return "", filepath.Join(srv, "router.toml")
		}},
		{"default home", func(t *testing.T, home, cwd string) (string, string) {
			touch(t, filepath.Join(home, ".anvil-serving/router.toml"), "")
			touch(t, filepath.Join(cwd, "router.toml"), "")
			return "", filepath.Join(home, ".anvil-serving/router.toml")
		}},
		{"serving home set but empty falls to cwd", func(t *testing.T, home, cwd string) (string, string) {
			t.Setenv("ANVIL_SERVING_HOME", filepath.Join(home, "srv"))
			touch(t, filepath.Join(home, ".anvil-serving/router.toml"), "")
			touch(t, filepath.Join(cwd, "router.toml"), "")
			return "", filepath.Join(cwd, "router.toml")
		}},
		{"directory named router.toml is not a file", func(t *testing.T, home, cwd string) (string, string) {
			if err := os.MkdirAll(filepath.Join(home, ".anvil-serving/router.toml"), 0o755); err != nil {
				t.Fatal(err)
			}
			touch(t, filepath.Join(cwd, "router.toml"), "")
			return "", filepath.Join(cwd, "router.toml")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home, cwd := sandbox(t)
			flag, want := c.setup(t, home, cwd)
			got, err := config.Discover(flag)
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			// The temp dir may sit behind a symlink (macOS /var): compare
			// resolved paths when the file exists.
			if r1, err1 := filepath.EvalSymlinks(got); err1 == nil {
				if r2, err2 := filepath.EvalSymlinks(want); err2 == nil {
					got, want = r1, r2
				}
			}
			if got != want {
				t.Errorf("Discover = %q, want %q", got, want)
			}
		})
	}
}

func TestDiscoverNothingFound(t *testing.T) {
	home, _ := sandbox(t)
	_, err := config.Discover("")
	if !errors.Is(err, config.ErrNoConfig) {
		t.Fatalf("err = %v, want ErrNoConfig", err)
	}
	for _, place := range []string{"--config", "$ANVIL_CONFIG", filepath.Join(home, ".anvil-serving/router.toml"), "./router.toml"} {
		if !strings.Contains(err.Error(), place) {
			t.Errorf("error %q does not mention %s", err, place)
		}
	}
}

func TestResolveSecret(t *testing.T) {
	const name = "ANVIL_TEST_ROUTER_TOKEN"
	cases := []struct {
		name     string
		env      string
		servEnv  string // $ANVIL_SERVING_HOME/.env
		homeEnv  string // ~/.env
		want     string
		wantFail bool
	}{
		{"process env trimmed", "  tok-env \n", "", "", "tok-env", false},
		{"process env wins", "tok-env", name + "=tok-serv\n", "", "tok-env", false},
		{"serving home dotenv", "", "# router\nexport " + name + "=\"tok serv\"\n", name + "=tok-home\n", "tok serv", false},
		{"home dotenv", "", "OTHER=1\n", "\n" + name + " = 'tok-home' # set by init\n", "tok-home", false},
		{"blank env falls through", "   ", name + "=tok-serv\n", "", "tok-serv", false},
		{"inline comment", "", name + "=abc123 # rotated monthly\n", "", "abc123", false},
		{"hash without space kept", "", name + "=abc#123\n", "", "abc#123", false},
		{"quoted hash kept", "", name + "=\"abc #123\"\n", "", "abc #123", false},
		{"last assignment wins", "", name + "=old\n" + name + "=new\n", "", "new", false},
		{"prefix of another name ignored", "", name + "_OLD=nope\n", "", "", true},
		{"empty everywhere", "", name + "=\n", name + "=\"\"\nOTHER_SECRET=hunter2\n", "", true},
		{"unset everywhere", "", "", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home, _ := sandbox(t)
			serving := filepath.Join(home, "serving")
			t.Setenv("ANVIL_SERVING_HOME", serving)
			t.Setenv(name, c.env)
			if c.servEnv != "" {
				touch(t, filepath.Join(serving, ".env"), c.servEnv)
			}
			if c.homeEnv != "" {
				touch(t, filepath.Join(home, ".env"), c.homeEnv)
			}
			got, err := config.ResolveSecret(name)
			if c.wantFail {
				if err == nil {
					t.Fatalf("ResolveSecret = %q, want an error", got)
				}
				msg := err.Error()
				for _, must := range []string{name, "process environment", filepath.Join(serving, ".env"), filepath.Join(home, ".env")} {
					if !strings.Contains(msg, must) {
						t.Errorf("error %q does not mention %q", msg, must)
					}
				}
				for _, secret := range []string{"hunter2", "nope"} {
					if strings.Contains(msg, secret) {
						t.Errorf("error %q leaks a value", msg)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveSecret: %v", err)
			}
			if got != c.want {
				t.Errorf("ResolveSecret = %q, want %q", got, c.want)
			}
		})
	}
}

func TestLookupTierSecret(t *testing.T) {
	home, _ := sandbox(t)
	touch(t, filepath.Join(home, ".env"), "TIER_TEST_TOKEN_B=from-dotenv\n")
	t.Setenv("TIER_TEST_TOKEN_A", " tier-secret ")
	t.Setenv("TIER_TEST_TOKEN_B", "")
	cases := []struct{ name, env, want string }{
		{"set and trimmed", "TIER_TEST_TOKEN_A", "tier-secret"},
		{"dotenv not consulted", "TIER_TEST_TOKEN_B", ""},
		{"no name", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := config.LookupTierSecret(c.env); got != c.want {
				t.Errorf("LookupTierSecret(%q) = %q, want %q", c.env, got, c.want)
			}
		})
	}
}

func TestSummary(t *testing.T) {
	cfg, err := config.Load("testdata/anvil-router.local.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := "llm.primary → qwen-a (Qwen/Qwen3-32B-AWQ, openai, 127.0.0.1:8001)\n" +
		"llm.fast → qwen-fast (model from serve, openai, 127.0.0.1:8002)\n" +
		"default → qwen-a (Qwen/Qwen3-32B-AWQ, openai, 127.0.0.1:8001)\n" +
		"qwen3-32b → qwen-a (Qwen/Qwen3-32B-AWQ, openai, 127.0.0.1:8001)\n" +
		"2 purpose models, 3 audio routes\n"
	if got := cfg.Summary(); got != want {
		t.Errorf("Summary() =\n%s\nwant\n%s", got, want)
	}
}

func TestSummaryHidesUserinfo(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines("base_url", `"https://user:pa55@gpu.example:8443/v1"`), ""))
	if s := cfg.Summary(); strings.Contains(s, "pa55") || !strings.Contains(s, "gpu.example:8443") {
		t.Errorf("Summary() = %q", s)
	}
}
