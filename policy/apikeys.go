package policy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Scope is a permission of an API key (seed: read, write, files, admin).
//
//	read   GET /v1/models and the metadata endpoints
//	write  inference: chat, completions, responses, images, Anthropic messages
//	files  the files API
//	admin  the management API (bounded by the tailnet grant, see ApplyKey)
type Scope string

// The scopes a key may carry.
const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
	ScopeFiles Scope = "files"
	ScopeAdmin Scope = "admin"
)

// ParseScope accepts one of the four scope names (case-insensitive, trimmed).
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(strings.ToLower(strings.TrimSpace(s))); sc {
	case ScopeRead, ScopeWrite, ScopeFiles, ScopeAdmin:
		return sc, nil
	}
	return "", fmt.Errorf("unknown scope %q (want read, write, files or admin)", s)
}

// ParseScopes parses a scope list; it must name at least one scope.
// Duplicates are dropped.
func ParseScopes(names []string) ([]Scope, error) {
	if len(names) == 0 {
		return nil, errors.New("scopes: at least one of read, write, files, admin is required")
	}
	out := make([]Scope, 0, len(names))
	for _, n := range names {
		sc, err := ParseScope(n)
		if err != nil {
			return nil, fmt.Errorf("scopes: %w", err)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// Key-set limits.
const (
	// MaxKeys bounds a key set (seed: 10,000, against DoS by huge files).
	MaxKeys = 10000
	// MinSecretLen is the shortest key accepted from config: keys are kept
	// as unsalted SHA-256 digests, which is only safe for secrets with
	// enough entropy.
	MinSecretLen = 16
	// MaxSecretLen bounds what is hashed per request.
	MaxSecretLen = 512
)

// Where a key was defined. Only runtime keys are managed by the admin API
// and persisted in the state dir.
const (
	SourceConfig  = "config"  // [[api_keys.api_keys]] in router.toml
	SourceFile    = "file"    // api_keys_file
	SourceRuntime = "runtime" // created by the admin API or `keys create`
)

// APIKey is a client key and its policy. The secret itself is never kept:
// only its SHA-256 Digest and its last four characters for masked display.
// Values inside a KeySet are shared and must not be modified.
type APIKey struct {
	ID             string
	UserID         string
	OrganizationID string
	Name           string
	Description    string
	Scopes         []Scope
	// RateLimit is requests per minute; 0 means none.
	RateLimit int
	// MaxConcurrency caps the key's requests in flight at once; 0 means
	// the router's default share.
	MaxConcurrency int
	// TokensPerDay and RequestsPerDay are the key's day budget (UTC days;
	// 0: none). Budget names a bucket shared with every key and grant
	// that names it; empty: the key's own.
	TokensPerDay, RequestsPerDay int64
	Budget                       string
	Enabled                      bool
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// AllowedBackends names the backend ids (chat tiers, purpose models,
	// audio routes) the key may route to. Seed
	// semantics: nil or empty means unrestricted; non-empty is an exact,
	// case-sensitive allow-list. (Clearing and keeping on update is
	// KeyUpdate's business.)
	AllowedBackends []string
	// Guardrails names guardrail providers this key's requests get on
	// top of those that apply to everyone (never fewer).
	Guardrails []string
	CreatedAt  time.Time
	// Source is SourceConfig, SourceFile or SourceRuntime.
	Source string

	// Digest is sha256(secret).
	Digest [sha256.Size]byte
	// Last4 is the secret's last four characters ("" if it was too short
	// to show any), for Masked.
	Last4 string
}

// SetSecret stores the digest and mask hint of secret in k; the plaintext
// is not retained.
func (k *APIKey) SetSecret(secret string) {
	k.Digest = sha256.Sum256([]byte(secret))
	k.Last4 = last4(secret)
}

// HasScope reports whether the key carries scope s.
func (k *APIKey) HasScope(s Scope) bool { return slices.Contains(k.Scopes, s) }

// Restricted reports whether AllowedBackends limits the key.
func (k *APIKey) Restricted() bool { return len(k.AllowedBackends) > 0 }

// MayUseTier reports whether the key may route to tier id (exact match);
// an unrestricted key may use any tier, a restricted one never "" (an
// alias that maps to no tier).
func (k *APIKey) MayUseTier(tierID string) bool {
	if !k.Restricted() {
		return true
	}
	return tierID != "" && slices.Contains(k.AllowedBackends, tierID)
}

// Masked is the key as it may be shown anywhere: "sk-***abcd".
func (k *APIKey) Masked() string { return maskPrefix + k.Last4 }

// String never shows the digest, only id and mask, so %v of a key is safe
// to log.
func (k APIKey) String() string { return "api key " + k.ID + " (" + k.Masked() + ")" }

// LogValue makes slog print the same safe summary.
func (k APIKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", k.ID), slog.String("user", k.UserID),
		slog.String("org", k.OrganizationID), slog.String("key", k.Masked()))
}

const maskPrefix = "sk-***"

// Mask shows a secret as "sk-***" plus its last four characters, never
// more. Secrets shorter than 20 characters, or whose tail is not printable
// ASCII, show no characters at all.
func Mask(secret string) string { return maskPrefix + last4(secret) }

func last4(secret string) string {
	if len(secret) < 20 {
		return ""
	}
	tail := secret[len(secret)-4:]
	for i := 0; i < len(tail); i++ {
		if tail[i] <= ' ' || tail[i] > '~' {
			return ""
		}
	}
	return tail
}

// SecretPrefix starts every generated key.
const SecretPrefix = "sk-anvil-"

// NewSecret generates a key: SecretPrefix and 32 random bytes, base64url.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Authentication failures. Every one of them is a 401 for the caller; the
// key id (never the secret) is available through *KeyError for the log.
var (
	ErrKeyUnknown = errors.New("unknown api key")
	// ErrKeyRevoked is a key the router knew and that was rotated away,
	// deleted or removed: refused in every mode, so a revoked key never
	// passes as an anonymous caller without its restrictions.
	ErrKeyRevoked  = errors.New("api key was revoked")
	ErrKeyDisabled = errors.New("api key is disabled")
	ErrKeyExpired  = errors.New("api key has expired")
)

// KeyError ties a failure to a known key id. It never holds the secret.
type KeyError struct {
	ID  string
	Err error
	// Detail adds context (e.g. the scope needed); never a secret.
	Detail string
}

func (e *KeyError) Error() string {
	s := e.Err.Error() + ": " + e.ID
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *KeyError) Unwrap() error { return e.Err }

// KeySet is an immutable, validated set of keys, safe for concurrent use.
// A reload builds a new set and swaps it in. A nil *KeySet holds no keys.
type KeySet struct {
	keys     []APIKey
	byDigest map[[sha256.Size]byte]*APIKey
	byID     map[string]*APIKey
	// revoked are digests of keys no longer in force, until when (zero:
	// for good).
	revoked map[[sha256.Size]byte]time.Time
}

// Revoked is a key no longer in force: its digest, and until when it is
// remembered (the key's own expiry; zero: for good).
type Revoked struct {
	Digest [sha256.Size]byte
	Until  time.Time
}

// WithRevoked returns s that also refuses the revoked digests (those
// still valid keys of s are not refused).
func (s *KeySet) WithRevoked(list []Revoked) *KeySet {
	c := *s
	c.revoked = make(map[[sha256.Size]byte]time.Time, len(list))
	for _, r := range list {
		c.revoked[r.Digest] = r.Until
	}
	return &c
}

// NewKeySet validates keys and indexes them; knownBackends are the
// configured tier ids. Errors (all of them, joined): more than MaxKeys
// keys, a missing id, user_id, organization_id, scopes or digest, an
// unknown scope, a negative rate_limit, a duplicate id, two keys with the
// same secret. Warnings (the set is still built): allowed_backends names
// that are not tiers — renaming a tier must not break the router before
// the operator updates the keys; the key simply cannot reach that name.
// The input is copied; an empty allowed_backends is stored as nil (both
// mean unrestricted).
func NewKeySet(keys []APIKey, knownBackends []string) (*KeySet, []string, error) {
	if len(keys) > MaxKeys {
		return nil, nil, fmt.Errorf("%d api keys; at most %d are allowed", len(keys), MaxKeys)
	}
	s := &KeySet{
		keys:     make([]APIKey, len(keys)),
		byDigest: make(map[[sha256.Size]byte]*APIKey, len(keys)),
		byID:     make(map[string]*APIKey, len(keys)),
	}
	var errs []error
	var warnings []string
	var zero [sha256.Size]byte
	for i := range keys {
		k := keys[i]
		k.Scopes = slices.Clone(k.Scopes)
		k.AllowedBackends = slices.Clone(k.AllowedBackends)
		if len(k.AllowedBackends) == 0 {
			k.AllowedBackends = nil
		}
		s.keys[i] = k
		kp := &s.keys[i]
		name := fmt.Sprintf("api key #%d", i+1)
		idErr := CheckKeyID(k.ID)
		if idErr == nil {
			name = fmt.Sprintf("api key %q (#%d)", k.ID, i+1)
		}
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, a...)))
		}
		if idErr != nil {
			bad("%v", idErr)
		} else if _, dup := s.byID[k.ID]; dup {
			bad("duplicate id")
		} else {
			s.byID[k.ID] = kp
		}
		if k.UserID == "" {
			bad("user_id is required")
		}
		if k.OrganizationID == "" {
			bad("organization_id is required")
		}
		if len(k.Scopes) == 0 {
			bad("scopes: at least one of read, write, files, admin is required")
		}
		for _, sc := range k.Scopes {
			switch sc {
			case ScopeRead, ScopeWrite, ScopeFiles, ScopeAdmin:
			default:
				bad("unknown scope %q", sc)
			}
		}
		if k.MaxConcurrency < 0 {
			bad("max_concurrency must be >= 0")
		}
		if k.TokensPerDay < 0 || k.RequestsPerDay < 0 {
			bad("tokens_per_day and requests_per_day must be >= 0")
		}
		if len(k.Budget) > 64 {
			bad("budget name longer than 64 bytes")
		}
		if k.RateLimit < 0 {
			bad("rate_limit must be >= 0")
		}
		if k.Digest == zero {
			bad("no key value")
		} else if other, dup := s.byDigest[k.Digest]; dup {
			bad("has the same key value as %q", other.ID)
		} else {
			s.byDigest[k.Digest] = kp
		}
		for _, b := range k.AllowedBackends {
			if !slices.Contains(knownBackends, b) {
				warnings = append(warnings, fmt.Sprintf("%s: allowed_backends names unknown tier %q; the key cannot reach it", name, b))
			}
		}
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return s, warnings, nil
}

// Len is the number of keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Get returns the key with id.
func (s *KeySet) Get(id string) (*APIKey, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.byID[id]
	return k, ok
}

// Keys returns the keys in definition order (shared; do not modify).
func (s *KeySet) Keys() []APIKey {
	if s == nil {
		return nil
	}
	return slices.Clip(s.keys)
}

// Authenticate finds the key whose secret was presented. The presented
// value is hashed whole before any comparison, so how long a lookup takes
// does not depend on how much of a real key it shares; the map lookup is
// by digest, then the digests are compared in constant time. It returns
// ErrKeyUnknown (also for a nil set or an empty secret), or a *KeyError
// wrapping ErrKeyDisabled or ErrKeyExpired (at or after ExpiresAt).
func (s *KeySet) Authenticate(secret string, now time.Time) (*APIKey, error) {
	if s == nil || secret == "" || len(secret) > MaxSecretLen {
		return nil, ErrKeyUnknown
	}
	d := digestOf(secret)
	k, ok := s.byDigest[d]
	if !ok || subtle.ConstantTimeCompare(k.Digest[:], d[:]) != 1 {
		if until, revoked := s.revoked[d]; revoked && (until.IsZero() || now.Before(until)) {
			return nil, ErrKeyRevoked
		}
		return nil, ErrKeyUnknown
	}
	if !k.Enabled {
		return nil, &KeyError{ID: k.ID, Err: ErrKeyDisabled}
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return nil, &KeyError{ID: k.ID, Err: ErrKeyExpired}
	}
	return k, nil
}

// digestOf hashes a presented credential of at most MaxSecretLen bytes
// through a stack buffer ([]byte(s) of a string over 32 bytes would
// allocate on every request).
func digestOf(s string) [sha256.Size]byte {
	var buf [MaxSecretLen]byte
	if len(s) > len(buf) {
		return sha256.Sum256([]byte(s))
	}
	n := copy(buf[:], s)
	return sha256.Sum256(buf[:n])
}

// KeyUpdate is an admin update of a key's properties; a nil field leaves
// the property unchanged. AllowedBackends follows the seed: nil (JSON null
// or absent) leaves the list unchanged, a pointer to an empty slice clears
// every restriction, a non-empty slice replaces the list. ExpiresAt set to
// a pointer to the zero time removes the expiry.
type KeyUpdate struct {
	Name            *string    `json:"name"`
	Description     *string    `json:"description"`
	Scopes          *[]string  `json:"scopes"`
	RateLimit       *int       `json:"rate_limit"`
	MaxConcurrency  *int       `json:"max_concurrency"`
	TokensPerDay    *int64     `json:"tokens_per_day"`
	RequestsPerDay  *int64     `json:"requests_per_day"`
	Budget          *string    `json:"budget"`
	Enabled         *bool      `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	AllowedBackends *[]string  `json:"allowed_backends"`
}

// Apply returns k with u applied (k itself is not modified). Id, user,
// organization, digest and creation time never change here.
func (u KeyUpdate) Apply(k APIKey) (APIKey, error) {
	if u.Name != nil {
		k.Name = *u.Name
	}
	if u.Description != nil {
		k.Description = *u.Description
	}
	if u.Scopes != nil {
		sc, err := ParseScopes(*u.Scopes)
		if err != nil {
			return APIKey{}, err
		}
		k.Scopes = sc
	} else {
		k.Scopes = slices.Clone(k.Scopes)
	}
	if u.MaxConcurrency != nil {
		if *u.MaxConcurrency < 0 {
			return k, errors.New("max_concurrency must be >= 0")
		}
		k.MaxConcurrency = *u.MaxConcurrency
	}
	if u.TokensPerDay != nil {
		if *u.TokensPerDay < 0 {
			return APIKey{}, errors.New("tokens_per_day must be >= 0")
		}
		k.TokensPerDay = *u.TokensPerDay
	}
	if u.RequestsPerDay != nil {
		if *u.RequestsPerDay < 0 {
			return APIKey{}, errors.New("requests_per_day must be >= 0")
		}
		k.RequestsPerDay = *u.RequestsPerDay
	}
	if u.Budget != nil {
		if len(*u.Budget) > 64 {
			return APIKey{}, errors.New("budget name longer than 64 bytes")
		}
		k.Budget = *u.Budget
	}
	if u.RateLimit != nil {
		if *u.RateLimit < 0 {
			return APIKey{}, errors.New("rate_limit must be >= 0")
		}
		k.RateLimit = *u.RateLimit
	}
	if u.Enabled != nil {
		k.Enabled = *u.Enabled
	}
	if u.ExpiresAt != nil {
		k.ExpiresAt = *u.ExpiresAt
	}
	switch {
	case u.AllowedBackends == nil:
		k.AllowedBackends = slices.Clone(k.AllowedBackends)
	case len(*u.AllowedBackends) == 0:
		k.AllowedBackends = nil
	default:
		for _, b := range *u.AllowedBackends {
			if b == "" {
				return APIKey{}, errors.New("allowed_backends contains an empty name")
			}
		}
		k.AllowedBackends = slices.Clone(*u.AllowedBackends)
	}
	return k, nil
}
