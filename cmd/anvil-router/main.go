// Command anvil-router is the appliance: it routes OpenAI-compatible
// requests from authenticated callers to model serves on loopback.
//
//	TS_AUTHKEY=... anvil-router serve --config router.toml
//	anvil-router serve --config router.toml --dev-listen 127.0.0.1:8000
//	anvil-router check --config router.toml
//	anvil-router init [--ports 8000,30000] [--out router.toml] [--compose compose.yaml]
//	anvil-router demo
//	anvil-router version
//	anvil-router acp [--config agent.toml] [--router http://anvil | --tsnet]
//
// Listeners are plain TCP, not Multipath TCP (Go's default since 1.24):
// Landlock's bind rules, which keep the process off host interfaces, do
// not cover MPTCP sockets.
//
//go:debug multipathtcp=0
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = ""

// exitUsage is the exit status for configuration and usage errors, as the
// Python router used.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		if acpArgs, ok := stdioMode(rest); ok {
			err = cmdACP(acpArgs, os.Stdin, stdout, stderr)
		} else {
			err = cmdServe(rest, stderr)
		}
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "init":
		err = cmdInit(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "healthcheck":
		err = cmdHealthcheck(rest, stdout, stderr)
	case "keys":
		err = cmdKeys(rest, stdout, stderr)
	case "acp":
		err = cmdACP(rest, os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "anvil-router", versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "anvil-router: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ce *config.Error
	if errors.As(err, &ce) && len(ce.Problems) > 0 {
		fmt.Fprintf(stderr, "anvil-router: %d problem(s) in the config:\n%s\n", len(ce.Problems), ce)
		return exitUsage
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "anvil-router:", err)
		return exitUsage
	}
	fmt.Fprintln(stderr, "anvil-router:", err)
	return 1
}

// usageError marks errors the operator must fix (bad flags, bad config):
// exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usage(w io.Writer) {
	fmt.Fprint(w, `anvil-router routes OpenAI-compatible LLM requests to model serves on loopback.

Commands:
  serve        join the tailnet and serve the router there
               (--dev-listen 127.0.0.1:PORT: loopback only, no tailnet)
  check        validate a config file and print its routes
  init         write a router.toml for the serves on this host's loopback
               (--compose FILE: also add the router service to their compose file)
  healthcheck  exit 0 if the router's loopback /healthz answers 200
  keys         create or list API keys in the runtime key store
  acp          a coding agent for ACP editors (Zed, JetBrains, Neovim) on
               stdin/stdout, using the router's models
  demo         run a fake model serve and the router on 127.0.0.1:8000
  version      print the version

Run 'anvil-router COMMAND -h' for a command's flags.
`)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return "dev-" + rev + dirty
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// envDefault returns the environment's value for name, or def.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
