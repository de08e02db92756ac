package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ResolveSecret returns the value of the variable named by [server].auth_env:
// from the process environment, then $ANVIL_SERVING_HOME/.env, then ~/.env.
// The value is trimmed; an empty one counts as unset so a blank export does
// not switch auth on with an empty token. The error names the variable and
// the places checked, never a value.
func ResolveSecret(name string) (string, error) {
	return processEnv.resolveSecret(name)
}

// LookupTierSecret returns the trimmed value of a tier's (or purpose
// model's, or audio route's) auth_env variable from the process
// environment only; "" means the upstream gets no Authorization header.
func LookupTierSecret(name string) string {
	if name == "" {
		return ""
	}
	return strings.TrimSpace(os.Getenv(name))
}

func (e environment) resolveSecret(name string) (string, error) {
	if name == "" {
		return "", errors.New("no secret variable named")
	}
	checked := []string{"process environment"}
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v, nil
	}
	files := []string{filepath.Join(e.servingHome(), ".env")}
	if home, err := e.homeDir(); err == nil && home != "" {
		files = append(files, filepath.Join(home, ".env"))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			checked = append(checked, f+" (absent)")
			continue
		case err != nil:
			checked = append(checked, f+" (unreadable)")
			continue
		}
		checked = append(checked, f)
		if v := strings.TrimSpace(dotenvValue(data, name)); v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("secret variable %s is unset or empty; checked %s", name, strings.Join(checked, ", "))
}

// dotenvValue finds name in a simple KEY=VALUE file: blank lines and lines
// starting with # are skipped, an "export " prefix is allowed, surrounding
// quotes are removed, and an unquoted value ends at a " #" comment. The last
// assignment wins, as when the file is sourced by a shell.
func dotenvValue(data []byte, name string) string {
	var value string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "export "))
		key, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != name {
			continue
		}
		value = unquoteDotenv(strings.TrimSpace(val))
	}
	return value
}

func unquoteDotenv(v string) string {
	if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			return v[1 : 1+end]
		}
	}
	for i := 1; i < len(v); i++ {
		if v[i] == '#' && (v[i-1] == ' ' || v[i-1] == '\t') {
			return strings.TrimSpace(v[:i])
		}
	}
	return v
}
