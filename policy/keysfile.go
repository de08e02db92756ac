package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// KeyRecord is one key as an operator writes it, with the seed's field
// names: an [[keys]] table of api_keys_file, or an [[api_keys.api_keys]]
// table of router.toml. Key is the plaintext (after ${ENV} substitution);
// APIKey hashes it and the record should then be dropped.
type KeyRecord struct {
	Key            string   `toml:"key"`
	ID             string   `toml:"id"`
	UserID         string   `toml:"user_id"`
	OrganizationID string   `toml:"organization_id"`
	Name           string   `toml:"name"`
	Description    string   `toml:"description"`
	Scopes         []string `toml:"scopes"`
	RateLimit      int      `toml:"rate_limit"`
	MaxConcurrency int      `toml:"max_concurrency"`
	TokensPerDay   int64    `toml:"tokens_per_day"`
	RequestsPerDay int64    `toml:"requests_per_day"`
	Budget         string   `toml:"budget"`
	Enabled        *bool    `toml:"enabled"` // absent: true
	// ExpiresAt is a TOML offset date-time (2025-12-31T23:59:59Z) or an
	// RFC 3339 string ("2025-12-31T23:59:59Z", as the seed writes it);
	// absent: never. A time without an offset is refused as ambiguous.
	ExpiresAt       any      `toml:"expires_at"`
	AllowedBackends []string `toml:"allowed_backends"`
	Guardrails      []string `toml:"guardrails"`
}

// String never shows the key value.
func (r KeyRecord) String() string { return "api key record " + r.ID }

// APIKey checks the record and turns it into a key from source (SourceFile
// or SourceConfig): ${VAR} in key is replaced through lookup, the value is
// hashed and only its digest and mask hint are kept. Errors name the
// record's id and variable names, never a value. Ids, duplicates and
// backends are NewKeySet's to check.
func (r KeyRecord) APIKey(source string, lookup func(string) (string, bool)) (APIKey, error) {
	secret, err := ExpandEnv(r.Key, lookup)
	if err != nil {
		return APIKey{}, fmt.Errorf("key: %w", err)
	}
	secret = strings.TrimSpace(secret)
	switch {
	case secret == "":
		return APIKey{}, errors.New("key is required")
	case len(secret) < MinSecretLen:
		return APIKey{}, fmt.Errorf("key is shorter than %d characters; generate one with `anvil-router keys create` or `openssl rand -hex 32`", MinSecretLen)
	case len(secret) > MaxSecretLen:
		return APIKey{}, fmt.Errorf("key is longer than %d characters", MaxSecretLen)
	}
	scopes, err := ParseScopes(r.Scopes)
	if err != nil {
		return APIKey{}, err
	}
	exp, err := expiry(r.ExpiresAt)
	if err != nil {
		return APIKey{}, err
	}
	k := APIKey{
		ID:              r.ID,
		UserID:          r.UserID,
		OrganizationID:  r.OrganizationID,
		Name:            r.Name,
		Description:     r.Description,
		Scopes:          scopes,
		RateLimit:       r.RateLimit,
		MaxConcurrency:  r.MaxConcurrency,
		TokensPerDay:    r.TokensPerDay,
		RequestsPerDay:  r.RequestsPerDay,
		Budget:          r.Budget,
		Enabled:         r.Enabled == nil || *r.Enabled,
		ExpiresAt:       exp,
		AllowedBackends: r.AllowedBackends,
		Guardrails:      r.Guardrails,
		Source:          source,
	}
	k.SetSecret(secret)
	return k, nil
}

func expiry(v any) (time.Time, error) {
	switch t := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return t, nil
	case string:
		if t == "" {
			return time.Time{}, nil
		}
		p, err := time.Parse(time.RFC3339, t)
		if err != nil {
			return time.Time{}, errors.New("expires_at: want an RFC 3339 time with an offset, e.g. 2025-12-31T23:59:59Z")
		}
		return p, nil
	case toml.LocalDateTime, toml.LocalDate:
		return time.Time{}, errors.New("expires_at: add a time zone offset (e.g. 2025-12-31T23:59:59Z); a local time is ambiguous")
	}
	return time.Time{}, fmt.Errorf("expires_at: want a date-time, got %s", tomlType(v))
}

// ExpandEnv replaces every ${NAME} in s with lookup(NAME). A variable that
// is unset or empty is an error naming it; so are a malformed reference
// and an unterminated "${". A "$" not followed by "{" is kept. Errors
// never contain s or a value.
func ExpandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New("unterminated ${ in value")
		}
		name := s[i+2 : i+2+end]
		if !validEnvName(name) {
			return "", errors.New("malformed ${...} reference in value (want ${NAME}, NAME of letters, digits and _)")
		}
		if lookup == nil {
			return "", fmt.Errorf("variable %s: no environment to read it from", name)
		}
		v, ok := lookup(name)
		if !ok || v == "" {
			return "", fmt.Errorf("variable %s is unset or empty", name)
		}
		b.WriteString(v)
		s = s[i+3+end:]
	}
}

func validEnvName(name string) bool {
	if name == "" || len(name) > 128 || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// keysFile is api_keys_file: TOML, one [[keys]] table per key.
//
//	[[keys]]
//	key = "${PARTNER_KEY}"
//	id = "key-partner-1"
//	user_id = "partner-acme"
//	organization_id = "org-acme"
//	scopes = ["read", "write"]
//	rate_limit = 500
//	allowed_backends = ["qwen-a"]
type keysFile struct {
	Keys []KeyRecord `toml:"keys"`
}

// ParseKeysFile parses the contents of an api_keys_file (TOML, see
// keysFile) strictly: unknown fields are errors, so a typo never widens
// or silently drops a restriction. Keys get SourceFile. All record
// problems are reported, joined; messages carry line numbers, ids and
// variable names, never a key value. The result still has to go through
// NewKeySet (ids, duplicates, backends, the key limit).
func ParseKeysFile(data []byte, lookup func(string) (string, bool)) ([]APIKey, error) {
	var f keysFile
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, keysFileError(err)
	}
	if len(f.Keys) > MaxKeys {
		return nil, fmt.Errorf("api keys file: %d keys; at most %d are allowed", len(f.Keys), MaxKeys)
	}
	return KeysFromRecords(f.Keys, SourceFile, "api keys file: keys", lookup)
}

// KeyConfig is the [api_keys] section of the router file, decoded by the
// config reader: the mode, the key file, the runtime store and the inline
// [[api_keys.api_keys]] records (values may still hold ${ENV}; they are
// resolved and hashed by KeysFromRecords on every load).
type KeyConfig struct {
	// Mode is "permissive" (keys optional) or "blocking" (see ParseKeyMode).
	Mode string
	// File is the optional api_keys_file (TOML, [[keys]] tables).
	File string
	// StorePath keeps keys created at run time (digests only); empty means
	// the default next to the tailnet state.
	StorePath string
	// Inline are the [[api_keys.api_keys]] records, in file order.
	Inline []KeyRecord
}

// KeysFromRecords turns records into keys from source with the key-file
// rules. All record problems are reported, joined, each named
// "<list>[i] (id ...)"; messages carry ids and variable names, never a
// key value.
func KeysFromRecords(records []KeyRecord, source, list string, lookup func(string) (string, bool)) ([]APIKey, error) {
	keys := make([]APIKey, 0, len(records))
	var errs []error
	for i, r := range records {
		k, err := r.APIKey(source, lookup)
		if err != nil {
			name := fmt.Sprintf("%s[%d]", list, i)
			if r.ID != "" {
				name += fmt.Sprintf(" (id %q)", r.ID)
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// keysFileError describes a TOML decode failure by position and key
// path. The decoder's own text can quote a character of the offending
// value (a key, maybe), so only its general part is kept.
func keysFileError(err error) error {
	var de *toml.DecodeError
	var sm *toml.StrictMissingError
	switch {
	case errors.As(err, &sm):
		var keys []string
		for _, e := range sm.Errors {
			line, _ := e.Position()
			keys = append(keys, fmt.Sprintf("%s (line %d)", strings.Join(e.Key(), "."), line))
		}
		return fmt.Errorf("api keys file: unknown field(s) %s (want key, id, user_id, organization_id, name, description, scopes, rate_limit, enabled, expires_at, allowed_backends, guardrails under [[keys]])", strings.Join(keys, ", "))
	case errors.As(err, &de):
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if i := strings.Index(msg, " U+"); i >= 0 {
			msg = msg[:i] // "unexpected character U+0073 's' ..." → "unexpected character"
		}
		what := "invalid TOML: "
		if i := strings.Index(msg, " into struct field"); i >= 0 {
			// "cannot decode TOML string into struct field …": Go type
			// names help no operator.
			what, msg = "wrong type: got TOML ", strings.TrimPrefix(msg[:i], "cannot decode TOML ")
		}
		where := ""
		if k := de.Key(); len(k) > 0 {
			where = " (" + strings.Join(k, ".") + ")"
		}
		return fmt.Errorf("api keys file: line %d, column %d%s: %s%s", line, col, where, what, msg)
	}
	return errors.New("api keys file: invalid TOML")
}

func tomlType(v any) string {
	switch v.(type) {
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return "another type"
}
