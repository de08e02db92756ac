package guard

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
)

// options reads one provider's options table strictly: every getter marks
// its key as known, and err reports the first bad value or, failing that,
// any key no getter asked for — a misspelt option is a configuration
// error, never silently ignored. Messages name the provider and the key,
// never a value (a value may be a URL with credentials or a policy text).
type options struct {
	what  string // `guard_model "llamaguard"`, for messages
	m     map[string]any
	known map[string]bool
	first error
}

func newOptions(what string, m map[string]any) *options {
	return &options{what: what, m: m, known: map[string]bool{}}
}

func (o *options) fail(key, format string, args ...any) {
	if o.first == nil {
		o.first = fmt.Errorf("%s: option %q: %s", o.what, key, fmt.Sprintf(format, args...))
	}
}

// get returns the raw value of key and marks it known.
func (o *options) get(key string) (any, bool) {
	o.known[key] = true
	v, ok := o.m[key]
	return v, ok && v != nil
}

func (o *options) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

func (o *options) string(key, def string) string {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, isString := v.(string)
	if !isString {
		o.fail(key, "want a string, got %s", typeName(v))
		return def
	}
	return s
}

// oneOf is string restricted to the allowed values (the first is the default).
func (o *options) oneOf(key string, allowed ...string) string {
	s := o.string(key, allowed[0])
	if !slices.Contains(allowed, s) {
		o.fail(key, "want one of %s", strings.Join(quoteAll(allowed), ", "))
		return allowed[0]
	}
	return s
}

func (o *options) int(key string, def int) int {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	// TOML decoders give int64, JSON gives float64; accept any integral number.
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case int32:
		return int(n)
	case uint64:
		if n <= math.MaxInt32 {
			return int(n)
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32 {
			return int(n)
		}
	}
	o.fail(key, "want an integer, got %s", typeName(v))
	return def
}

// nonNegInt is int that must be ≥ 0.
func (o *options) nonNegInt(key string, def int) int {
	n := o.int(key, def)
	if n < 0 {
		o.fail(key, "must not be negative")
		return def
	}
	return n
}

func (o *options) float(key string, def float64) float64 {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	switch n := v.(type) {
	case float64:
		return n
	case float32:
		return float64(n)
	case int:
		return float64(n)
	case int64:
		return float64(n)
	}
	o.fail(key, "want a number, got %s", typeName(v))
	return def
}

// duration reads a Go duration string ("2s", "500ms"); zero or negative
// is refused unless allowZero (then "0s" means off).
func (o *options) duration(key string, def time.Duration, allowZero bool) time.Duration {
	v, ok := o.get(key)
	if !ok {
		return def
	}
	s, isString := v.(string)
	if !isString {
		o.fail(key, `want a duration string such as "2s", got %s`, typeName(v))
		return def
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		o.fail(key, `want a duration string such as "2s"`)
		return def
	case d < 0 || (d == 0 && !allowZero):
		o.fail(key, "must be positive")
		return def
	}
	return d
}

func (o *options) strings(key string) []string {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	switch l := v.(type) {
	case []string:
		return slices.Clone(l)
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			s, isString := e.(string)
			if !isString {
				o.fail(key, "want a list of strings, found %s", typeName(e))
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	o.fail(key, "want a list of strings, got %s", typeName(v))
	return nil
}

// httpURL reads a required http or https URL with a host.
func (o *options) httpURL(key string) string {
	s := o.string(key, "")
	if s == "" {
		if o.first == nil {
			o.fail(key, "required")
		}
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		o.fail(key, "want an http:// or https:// URL with a host")
		return ""
	}
	if u.User != nil {
		// Credentials in a URL end up in logs and /admin views; secrets
		// come from the environment (secret_env) instead.
		o.fail(key, "must not carry credentials (use secret_env)")
		return ""
	}
	return s
}

// err is the first bad value, or else the unknown keys, or nil.
func (o *options) err() error {
	if o.first != nil {
		return o.first
	}
	var unknown []string
	for k := range o.m {
		if !o.known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%s: unknown option %s", o.what, strings.Join(quoteAll(unknown), ", "))
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int32, int64, uint64, float32, float64:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func quoteAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// errUnavailable marks an upstream that did not answer usefully (down,
// slow, failing or malformed); the engine applies on_error to it.
var errUnavailable = errors.New("guard upstream unavailable")
