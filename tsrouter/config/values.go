package config

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// checker collects problems instead of stopping at the first one.
type checker struct {
	lines    *lineIndex
	problems []Problem
	// env resolves ${NAME} in inline API keys (Load: the process
	// environment, so check and serve refuse the same files); nil leaves
	// the references for the key ring (Parse).
	env func(string) (string, bool)
}

func (c *checker) report(at keyPath, format string, args ...any) {
	c.reportAs(at.String(), at, format, args...)
}

// reportAs names the problem with a display key that differs from the path
// used to find its line (flattened aliases are shown as one quoted key but
// may be written as dotted keys in the file).
func (c *checker) reportAs(display string, at keyPath, format string, args ...any) {
	c.problems = append(c.problems, Problem{
		Line: c.lines.lineOf(at),
		Key:  display,
		Msg:  fmt.Sprintf(format, args...),
	})
}

// table is a decoded TOML table under validation, with the path used to
// name its keys in problems.
type table struct {
	c    *checker
	path keyPath
	m    map[string]any
}

func (t table) has(key string) bool {
	_, ok := t.m[key]
	return ok
}

// unknown reports every key of t that is not in allowed, one problem per
// key so each points at its own line.
func (t table) unknown(allowed []string, where string) {
	for _, k := range sortedKeys(t.m) {
		if !slices.Contains(allowed, k) {
			t.c.report(t.path.key(k), "unknown field in %s", where)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// typeName names a decoded TOML value's type for messages. It never
// includes the value itself, which might be a secret pasted by mistake.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case map[string]any:
		return "table"
	case []any:
		return "array"
	case time.Time, toml.LocalDateTime:
		return "datetime"
	case toml.LocalDate:
		return "date"
	case toml.LocalTime:
		return "time"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// str returns a string-valued key; ok is false when absent or mistyped
// (the latter reported).
func (t table) str(key string) (string, bool) {
	v, present := t.m[key]
	if !present {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.c.report(t.path.key(key), "must be a string, got %s", typeName(v))
	}
	return s, ok
}

// integer returns an int-valued key. Booleans are not integers here, unlike
// in Python where bool subclasses int.
func (t table) integer(key string) (int64, bool) {
	v, present := t.m[key]
	if !present {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.c.report(t.path.key(key), "must be an integer, got %s", typeName(v))
	}
	return n, ok
}

// number returns a numeric key; TOML integers count as numbers.
func (t table) number(key string) (float64, bool) {
	v, present := t.m[key]
	if !present {
		return 0, false
	}
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	}
	t.c.report(t.path.key(key), "must be a number, got %s", typeName(v))
	return 0, false
}

func (t table) boolean(key string) (bool, bool) {
	v, present := t.m[key]
	if !present {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		t.c.report(t.path.key(key), "must be true or false, got %s", typeName(v))
	}
	return b, ok
}

// sub returns a table-valued key (inline or [header] form alike).
func (t table) sub(key string) (table, bool) {
	v, present := t.m[key]
	if !present {
		return table{}, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.c.report(t.path.key(key), "must be a table, got %s", typeName(v))
		return table{}, false
	}
	return table{c: t.c, path: t.path.key(key), m: m}, true
}

// tables returns an array of tables ([[key]] or key = [{...}]); elements
// that are not tables are reported and skipped.
func (t table) tables(key string) ([]table, bool) {
	v, present := t.m[key]
	if !present {
		return nil, false
	}
	arr, ok := v.([]any)
	if !ok {
		t.c.report(t.path.key(key), "must be an array of tables, got %s", typeName(v))
		return nil, false
	}
	base := t.path.key(key)
	out := make([]table, 0, len(arr))
	for i, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			t.c.report(base.at(i), "must be a table, got %s", typeName(e))
			continue
		}
		out = append(out, table{c: t.c, path: base.at(i), m: m})
	}
	return out, true
}

// intIn reads an optional integer bounded to [lo, hi].
func (t table) intIn(key string, lo, hi, def int64) int {
	n, ok := t.integer(key)
	if !ok {
		return int(def)
	}
	if n < lo || n > hi {
		t.c.report(t.path.key(key), "must be between %d and %d, got %d", lo, hi, n)
		return int(def)
	}
	return int(n)
}

// positiveInt reads an optional integer that must be > 0; 0 means absent.
func (t table) positiveInt(key string) int {
	n, ok := t.integer(key)
	if !ok {
		return 0
	}
	if n <= 0 || int64(int(n)) != n {
		t.c.report(t.path.key(key), "must be > 0, got %d", n)
		return 0
	}
	return int(n)
}

// seconds reads an optional duration written as a number of seconds. It
// must be > 0; allowInf accepts +inf (clamped to the longest Duration) for
// the one key where the Python router never checked finiteness.
func (t table) seconds(key string, def time.Duration, allowInf bool) time.Duration {
	f, ok := t.number(key)
	if !ok {
		return def
	}
	switch {
	case math.IsNaN(f) || f <= 0:
		t.c.report(t.path.key(key), "must be a number of seconds > 0, got %v", f)
		return def
	case math.IsInf(f, 1) && !allowInf:
		t.c.report(t.path.key(key), "must be a finite number of seconds, got %v", f)
		return def
	}
	return secondsToDuration(f)
}

// secondsToDuration converts float seconds, saturating instead of
// overflowing and never rounding a positive value down to 0 (which callers
// read as "unset").
func secondsToDuration(f float64) time.Duration {
	ns := f * float64(time.Second)
	if ns >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	d := time.Duration(math.Round(ns))
	if d < 1 && f > 0 {
		d = 1
	}
	return d
}

var (
	envNamePattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	awsKeyIDLike   = regexp.MustCompile(`^(AKIA|ASIA)[0-9A-Z]{16}$`)
)

// envNameProblem checks an auth_env value and describes what is wrong
// without repeating the value: operators sometimes paste the secret itself
// where its variable name belongs.
func envNameProblem(name string) string {
	switch {
	case awsKeyIDLike.MatchString(name):
		return "looks like an AWS access key id, not a variable name: put the secret in the environment and its NAME here"
	case !envNamePattern.MatchString(name):
		return "must be the NAME of an environment variable (^[A-Z][A-Z0-9_]*$), never a secret value"
	}
	return ""
}

// envName reads an auth_env style key and validates it.
func (t table) envName(key string) string {
	s, ok := t.str(key)
	if !ok {
		return ""
	}
	if msg := envNameProblem(s); msg != "" {
		t.c.report(t.path.key(key), "%s", msg)
		return ""
	}
	return s
}

// hasHTTPScheme mirrors the Python check: a case-insensitive prefix test.
func hasHTTPScheme(raw string) bool {
	lower := strings.ToLower(raw)
	return strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://")
}

// jsonValue reports every value under path that encoding/json could not
// send upstream: TOML dates and times, NaN and infinities.
func (c *checker) jsonValue(path keyPath, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			c.jsonValue(path.key(k), x[k])
		}
	case []any:
		for i, e := range x {
			c.jsonValue(path.at(i), e)
		}
	case string, bool, int64:
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			c.report(path, "is not JSON-serialisable (%v)", x)
		}
	default:
		c.report(path, "is not JSON-serialisable (TOML %s)", typeName(v))
	}
}

// jsonTable reads an optional table whose content is sent (or shown) as
// JSON.
func (t table) jsonTable(key string) map[string]any {
	sub, ok := t.sub(key)
	if !ok {
		return nil
	}
	t.c.jsonValue(sub.path, sub.m)
	return sub.m
}
