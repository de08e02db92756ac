package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// cmdKeys manages runtime API keys offline, in the same store the admin
// API writes (a running router picks changes up within seconds).
//
//	anvil-router keys create --id ci-bot --user ci --org main --scopes read,write [--allowed-backends t1,t2] [--rate-limit 60] [--expires 2026-12-31T00:00:00Z]
//	anvil-router keys list
func cmdKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return usageError{errors.New("usage: anvil-router keys create|list [flags]")}
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (for the key store location and tier ids)")
	id := fs.String("id", "", "key id (required for create)")
	user := fs.String("user", "", "user_id (required)")
	org := fs.String("org", "", "organization_id (required)")
	name := fs.String("name", "", "human-readable name")
	scopes := fs.String("scopes", "read,write", "comma-separated: read, write, files, admin")
	backends := fs.String("allowed-backends", "", "comma-separated tier ids (empty: unrestricted)")
	rate := fs.Int("rate-limit", 0, "requests per minute (0: none)")
	expires := fs.String("expires", "", "expiry, RFC 3339 (empty: never)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	path, err := config.Discover(*cfgPath)
	if err != nil {
		return usageError{err}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return usageError{err}
	}
	ring, err := keyRing(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if args[0] == "list" {
		for _, k := range ring.Keys() {
			fmt.Fprintf(stdout, "%s\t%s\t%s\tenabled=%v\tscopes=%v\n", k.ID, k.Masked(), k.Source, k.Enabled, k.Scopes)
		}
		return nil
	}
	if *id == "" || *user == "" || *org == "" {
		return usageError{errors.New("keys create needs --id, --user and --org")}
	}
	sc, err := policy.ParseScopes(splitList(*scopes))
	if err != nil {
		return usageError{err}
	}
	k := policy.APIKey{ID: *id, UserID: *user, OrganizationID: *org, Name: *name, Scopes: sc, RateLimit: *rate, Enabled: true, AllowedBackends: splitList(*backends)}
	if *expires != "" {
		t, err := time.Parse(time.RFC3339, *expires)
		if err != nil {
			return usageError{fmt.Errorf("--expires: %w", err)}
		}
		k.ExpiresAt = t
	}
	created, secret, err := ring.Create(k)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(map[string]any{"id": created.ID, "key": secret, "note": "shown once; only a hash is stored"}, "", "  ")
	fmt.Fprintln(stdout, string(out))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
