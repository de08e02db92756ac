package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoConfig is wrapped by Discover when no config file was found.
var ErrNoConfig = errors.New("no router config found")

// environment is the process view Discover and ResolveSecret depend on,
// kept behind one seam so every variable and home-directory lookup goes
// through the same few functions (tests drive them with t.Setenv/t.Chdir).
type environment struct {
	lookupEnv func(string) (string, bool)
	homeDir   func() (string, error)
	isFile    func(string) bool
}

var processEnv = environment{
	lookupEnv: os.LookupEnv,
	homeDir:   os.UserHomeDir,
	isFile: func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular()
	},
}

// getenv returns a variable's value, with "" for unset.
func (e environment) getenv(name string) string {
	v, _ := e.lookupEnv(name)
	return v
}

// expand is expandHome against this environment's home directory.
func (e environment) expand(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := e.homeDir()
	if err != nil || home == "" {
		return p
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~"))
}

// servingHome is $ANVIL_SERVING_HOME, defaulting to ~/.anvil-serving.
func (e environment) servingHome() string {
	if h := e.getenv("ANVIL_SERVING_HOME"); h != "" {
		return e.expand(h)
	}
	return e.expand("~/.anvil-serving")
}

// Discover picks the config file: the --config flag value if given, then
// $ANVIL_CONFIG, then $ANVIL_SERVING_HOME/router.toml (home defaulting to
// ~/.anvil-serving), then ./router.toml. An explicit flag or $ANVIL_CONFIG
// is returned even if the file is missing, so Load reports that plainly
// instead of silently falling through to another file; the last two are
// used only if they exist. The error wraps ErrNoConfig and lists the
// places tried.
func Discover(flagValue string) (string, error) {
	return processEnv.discover(flagValue)
}

func (e environment) discover(flagValue string) (string, error) {
	if flagValue != "" {
		return e.expand(flagValue), nil
	}
	if v := e.getenv("ANVIL_CONFIG"); v != "" {
		return e.expand(v), nil
	}
	homeFile := filepath.Join(e.servingHome(), "router.toml")
	if e.isFile(homeFile) {
		return homeFile, nil
	}
	const local = "router.toml"
	if e.isFile(local) {
		if abs, err := filepath.Abs(local); err == nil {
			return abs, nil
		}
		return local, nil
	}
	return "", fmt.Errorf("%w; tried --config (not given), $ANVIL_CONFIG (unset), %s (not found), ./%s (not found)",
		ErrNoConfig, homeFile, local)
}
