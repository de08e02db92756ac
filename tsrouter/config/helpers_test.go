package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// baseTier is a valid tier, as ordered key/value-literal pairs.
var baseTier = [][2]string{
	{"id", `"t1"`},
	{"base_url", `"http://127.0.0.1:8001/v1"`},
	{"dialect", `"openai"`},
	{"context_limit", `4096`},
	{"privacy", `"local"`},
	{"tool_support", `true`},
	{"auth_env", `"T1_TOKEN"`},
}

// tierLines renders baseTier with overrides given as key, literal pairs. A
// literal of "-" drops the key; keys not in baseTier are appended in order.
func tierLines(kv ...string) string {
	over := map[string]string{}
	var extra []string
	for i := 0; i+1 < len(kv); i += 2 {
		if _, ok := over[kv[i]]; !ok && !slices.ContainsFunc(baseTier, func(p [2]string) bool { return p[0] == kv[i] }) {
			extra = append(extra, kv[i])
		}
		over[kv[i]] = kv[i+1]
	}
	var b strings.Builder
	write := func(k, v string) {
		if v != "-" {
			b.WriteString(k + " = " + v + "\n")
		}
	}
	for _, p := range baseTier {
		if v, ok := over[p[0]]; ok {
			write(p[0], v)
		} else {
			write(p[0], p[1])
		}
	}
	for _, k := range extra {
		write(k, over[k])
	}
	return b.String()
}

// doc builds a file with [router] scalars, one tier, one alias "a" → t1,
// and trailing text (purpose models, audio routes).
func doc(router, tier, rest string) string {
	return "[router]\n" + router + "\n[[router.tiers]]\n" + tier +
		"\n[router.model_routes]\na = \"t1\"\n" + rest
}

// want describes one expected problem: its key, a snippet of the line it
// must point at ("" for no line) and a piece of its message.
type want struct {
	key, at, msg string
}

// lineContaining returns the 1-based line of the first line of text that
// contains snippet, failing the test when there is none.
func lineContaining(t *testing.T, text, snippet string) int {
	t.Helper()
	if snippet == "" {
		return 0
	}
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, snippet) {
			return i + 1
		}
	}
	t.Fatalf("no line contains %q", snippet)
	return 0
}

// problemsOf extracts the problems of a config error.
func problemsOf(t *testing.T, err error) []config.Problem {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is %T, want *config.Error: %v", err, err)
	}
	return ce.Problems
}

// expectProblems parses text and checks it yields exactly the wanted
// problems (in any order), each with its key, line and message.
func expectProblems(t *testing.T, text string, wants []want) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(text))
	if len(wants) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		if cfg == nil {
			t.Fatal("nil config without error")
		}
		return
	}
	if cfg != nil {
		t.Errorf("config returned along with problems")
	}
	got := problemsOf(t, err)
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wants), err)
	}
	used := make([]bool, len(got))
	for _, w := range wants {
		line := lineContaining(t, text, w.at)
		found := false
		for i, p := range got {
			if used[i] || p.Key != w.key {
				continue
			}
			used[i], found = true, true
			if p.Line != line {
				t.Errorf("%s: line %d, want %d", w.key, p.Line, line)
			}
			if !strings.Contains(p.Msg, w.msg) {
				t.Errorf("%s: message %q does not contain %q", w.key, p.Msg, w.msg)
			}
			break
		}
		if !found {
			t.Errorf("no problem with key %q in:\n%v", w.key, err)
		}
	}
}

// mustParse parses text that is expected to be valid.
func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	return cfg
}
