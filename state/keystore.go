package state

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// The key store holds the API keys created at run time (admin API, `keys
// create`), one JSON file in the state dir, mode 0600, replaced atomically:
//
//	{"version":1,"keys":[{"id":"key-1","user_id":"u","organization_id":"o",
//	  "scopes":["read","write"],"enabled":true,"created_at":"…",
//	  "sha256":"<64 hex>","last4":"abcd"}]}
//
// It stores each key's SHA-256 digest and its last four characters (for
// masked display), never the key: a stolen state volume does not yield
// usable keys. Runtime keys are generated (policy.NewSecret, 256 random
// bits), so an unsalted digest is enough.
//
// Import direction: state imports policy (pure, imports nothing of this
// module), never the reverse.

const keyStoreVersion = 1

type keyStoreFile struct {
	Version int         `json:"version"`
	Keys    []storedKey `json:"keys"`
}

type storedKey struct {
	ID              string    `json:"id"`
	UserID          string    `json:"user_id"`
	OrganizationID  string    `json:"organization_id"`
	Name            string    `json:"name,omitempty"`
	Description     string    `json:"description,omitempty"`
	Scopes          []string  `json:"scopes"`
	RateLimit       int       `json:"rate_limit,omitempty"`
	MaxConcurrency  int       `json:"max_concurrency,omitempty"`
	TokensPerDay    int64     `json:"tokens_per_day,omitempty"`
	RequestsPerDay  int64     `json:"requests_per_day,omitempty"`
	Budget          string    `json:"budget,omitempty"`
	Enabled         bool      `json:"enabled"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	AllowedBackends []string  `json:"allowed_backends,omitempty"`
	Guardrails      []string  `json:"guardrails,omitempty"`
	CreatedAt       time.Time `json:"created_at,omitzero"`
	SHA256          string    `json:"sha256"`
	Last4           string    `json:"last4,omitempty"`
}

// LoadKeyStore reads the runtime keys at path, with Source
// policy.SourceRuntime. A missing file is no keys. A file that is not a
// valid store (bad JSON, unknown fields — e.g. a plaintext "key" —, a bad
// digest, a duplicate id, an unknown scope) is an error saying so; the
// caller should refuse to start or, on reload, keep the keys it has.
// Semantic checks (required fields, backends, limits) are NewKeySet's.
func LoadKeyStore(path string) ([]policy.APIKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("key store %s: %w", path, err)
	}
	corrupt := func(what string) error {
		return fmt.Errorf("key store %s is corrupt: %s; fix or remove it (runtime keys in it are then lost)", path, what)
	}
	var f keyStoreFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, corrupt(jsonProblem(err))
	}
	if dec.More() {
		return nil, corrupt("trailing data after the JSON object")
	}
	if f.Version != keyStoreVersion {
		return nil, corrupt(fmt.Sprintf("version %d, want %d", f.Version, keyStoreVersion))
	}
	if f.Keys == nil {
		return nil, corrupt(`no "keys" array`)
	}
	keys := make([]policy.APIKey, 0, len(f.Keys))
	seen := make(map[string]bool, len(f.Keys))
	for i, s := range f.Keys {
		if s.ID == "" {
			return nil, corrupt(fmt.Sprintf("entry %d has no id", i))
		}
		if seen[s.ID] {
			return nil, corrupt(fmt.Sprintf("duplicate id %q", s.ID))
		}
		seen[s.ID] = true
		k, err := s.apiKey()
		if err != nil {
			return nil, corrupt(fmt.Sprintf("entry %q: %v", s.ID, err))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// SaveKeyStore writes keys (the runtime ones; the caller filters) to path
// atomically with mode 0600, in the given order. Only digests and
// metadata are written. The store's directory (by default the tailnet
// state dir, which may not exist yet when a key is created before the
// first start) is created 0700 if missing.
func SaveKeyStore(path string, keys []policy.APIKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f := keyStoreFile{Version: keyStoreVersion, Keys: make([]storedKey, 0, len(keys))}
	var zero [32]byte
	for _, k := range keys {
		if k.ID == "" || k.Digest == zero {
			return fmt.Errorf("key store: refusing to save a key without id or digest")
		}
		s := storedKey{
			ID:              k.ID,
			UserID:          k.UserID,
			OrganizationID:  k.OrganizationID,
			Name:            k.Name,
			Description:     k.Description,
			Scopes:          make([]string, len(k.Scopes)),
			RateLimit:       k.RateLimit,
			MaxConcurrency:  k.MaxConcurrency,
			TokensPerDay:    k.TokensPerDay,
			RequestsPerDay:  k.RequestsPerDay,
			Budget:          k.Budget,
			Enabled:         k.Enabled,
			ExpiresAt:       k.ExpiresAt.UTC(),
			AllowedBackends: k.AllowedBackends,
			Guardrails:      k.Guardrails,
			CreatedAt:       k.CreatedAt.UTC(),
			SHA256:          hex.EncodeToString(k.Digest[:]),
			Last4:           k.Last4,
		}
		for i, sc := range k.Scopes {
			s.Scopes[i] = string(sc)
		}
		f.Keys = append(f.Keys, s)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

func (s storedKey) apiKey() (policy.APIKey, error) {
	d, err := hex.DecodeString(s.SHA256)
	if err != nil || len(d) != 32 {
		return policy.APIKey{}, errors.New(`"sha256" is not 64 hex digits`)
	}
	if bytes.Equal(d, make([]byte, 32)) {
		// SaveKeyStore never writes one: no key hashes to zero.
		return policy.APIKey{}, errors.New(`"sha256" is all zeros`)
	}
	if len(s.Last4) > 4 {
		return policy.APIKey{}, errors.New(`"last4" is longer than 4 characters`)
	}
	scopes, err := policy.ParseScopes(s.Scopes)
	if err != nil {
		return policy.APIKey{}, err
	}
	k := policy.APIKey{
		ID:              s.ID,
		UserID:          s.UserID,
		OrganizationID:  s.OrganizationID,
		Name:            s.Name,
		Description:     s.Description,
		Scopes:          scopes,
		RateLimit:       s.RateLimit,
		MaxConcurrency:  s.MaxConcurrency,
		TokensPerDay:    s.TokensPerDay,
		RequestsPerDay:  s.RequestsPerDay,
		Budget:          s.Budget,
		Enabled:         s.Enabled,
		ExpiresAt:       s.ExpiresAt,
		AllowedBackends: s.AllowedBackends,
		Guardrails:      s.Guardrails,
		CreatedAt:       s.CreatedAt,
		Source:          policy.SourceRuntime,
		Last4:           s.Last4,
	}
	copy(k.Digest[:], d)
	return k, nil
}

// jsonProblem describes a decode error without quoting file content.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty file"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "invalid JSON: truncated"
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type (%s)", te.Field, te.Value)
	}
	return err.Error() // e.g. `json: unknown field "key"`, unexpected EOF
}
