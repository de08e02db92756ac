package policy

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
)

// How API keys combine with the other credentials (Admit implements it):
//
//  1. Tailnet identity first, unchanged: WhoIs, allow-lists and grants
//     decide the Principal (Authorize). A key never admits a caller the
//     tailnet refused, and never widens what its grants allow.
//  2. The router token ([server].auth_env), when configured, is checked
//     independently and is required on every request but /healthz, with
//     or without a key (on admin routes the router's admin credential,
//     [admin.auth], stands in for it: tsrouter's admitCredentials). It may be sent in either header; the other header
//     then carries the key: "Authorization: Bearer <token>" plus
//     "x-api-key: <key>", or the reverse. Without a configured token the
//     key is the Bearer value, else x-api-key (a valid x-api-key also
//     counts when the Bearer value is not a known key: the seed's
//     Anthropic rule).
//  3. The key: in blocking mode the protected path classes need a valid
//     key; in permissive mode a missing or unknown key passes with the
//     tailnet Principal unchanged. A disabled or expired key is refused
//     (401) in both modes on every class but PathOpen: a turned-off key is
//     an operator decision the client should hear about.
//  4. A valid key must carry the path class's scope (403 otherwise), and
//     bounds the Principal (ApplyKey): models = aliases the grants cover
//     AND whose tier is in the key's allowed_backends; admin = the key has
//     scope admin AND (the caller has no grant at all, or a grant with
//     "admin": true); rate limits = the grant's rpm on the node's bucket
//     AND the key's rate_limit on the key's bucket (Limits).

// KeyMode is [api_keys].mode.
type KeyMode string

// The two modes of the seed.
const (
	// KeyModePermissive (the default) admits requests without a key; a
	// valid key attaches its policy.
	KeyModePermissive KeyMode = "permissive"
	// KeyModeBlocking requires a valid key on the protected path classes.
	KeyModeBlocking KeyMode = "blocking"
)

// ParseKeyMode reads [api_keys].mode; "" is the default, permissive.
func ParseKeyMode(s string) (KeyMode, error) {
	switch KeyMode(s) {
	case "", KeyModePermissive:
		return KeyModePermissive, nil
	case KeyModeBlocking:
		return KeyModeBlocking, nil
	}
	return "", fmt.Errorf("api_keys.mode %q: want permissive or blocking", s)
}

// PathClass is what a path is, as far as keys are concerned. The router's
// route table gives each route its class; the zero value is PathOther,
// which fails closed.
type PathClass uint8

// Path classes. Blocking mode protects the inference and model-listing
// endpoints plus unknown paths; admin, files and metrics keep their own
// authentication (admin credentials, scopes), and so do the metadata
// views.
const (
	// PathOther is any path not listed below: protected in blocking mode,
	// needs scope write (so an endpoint added later fails closed).
	PathOther PathClass = iota
	// PathOpen: liveness. Keys are not looked at.
	PathOpen
	// PathInference: anything that runs a model (chat, messages,
	// responses, embeddings, rerank, audio). Protected; scope write.
	PathInference
	// PathModels: model listings. Protected; scope read.
	PathModels
	// PathMetadata: tier capabilities, health and status views. Not
	// protected; scope read.
	PathMetadata
	// PathMetrics: the Prometheus scrape. Not protected; no scope.
	PathMetrics
	// PathFiles: file storage. Not protected (own auth); scope files.
	PathFiles
	// PathAdmin: admin API and decision-log views. Not protected (own
	// auth); scope admin.
	PathAdmin
)

var pathClassNames = [...]string{"other", "open", "inference", "models", "metadata", "metrics", "files", "admin"}

func (c PathClass) String() string {
	if int(c) < len(pathClassNames) {
		return pathClassNames[c]
	}
	return fmt.Sprintf("PathClass(%d)", c)
}

// Blocking reports whether blocking mode requires a key on c.
func (c PathClass) Blocking() bool {
	return c == PathInference || c == PathModels || c == PathOther
}

// Scope is the scope a key needs on c ("" none).
func (c PathClass) Scope() Scope {
	switch c {
	case PathInference, PathOther:
		return ScopeWrite
	case PathModels, PathMetadata:
		return ScopeRead
	case PathFiles:
		return ScopeFiles
	case PathAdmin:
		return ScopeAdmin
	}
	return ""
}

// Credentials is what a request presented, split between the router token
// and an API key (see rule 2 above).
type Credentials struct {
	// TokenOK: the router token was presented, or none is configured.
	TokenOK bool
	// Key is the API key candidate ("" none).
	Key string
	// AltKey is the x-api-key value, tried when Key (from Bearer) is not a
	// known key; only without a configured token.
	AltKey string
}

// SplitCredentials reads the Authorization and x-api-key headers. As with
// Credential, an Authorization header that is not "Bearer <value>" voids
// both headers (a misconfigured client is told so, not half-authenticated).
// Both token comparisons always run, in constant time.
func SplitCredentials(tok Token, authorization, xAPIKey string) Credentials {
	bearer, x := "", strings.TrimSpace(xAPIKey)
	if authorization != "" {
		scheme, value, ok := strings.Cut(strings.TrimSpace(authorization), " ")
		value = strings.TrimSpace(value)
		if !ok || !strings.EqualFold(scheme, "Bearer") || value == "" {
			return Credentials{TokenOK: !tok.Enabled()}
		}
		bearer = value
	}
	if !tok.Enabled() {
		c := Credentials{TokenOK: true, Key: bearer}
		if bearer == "" {
			c.Key = x
		} else if x != bearer {
			c.AltKey = x
		}
		return c
	}
	bm := tok.matches(bearer) && bearer != ""
	xm := tok.matches(x) && x != ""
	switch {
	case bm && xm:
		return Credentials{TokenOK: true}
	case bm:
		return Credentials{TokenOK: true, Key: x}
	case xm:
		return Credentials{TokenOK: true, Key: bearer}
	}
	return Credentials{}
}

func (t Token) matches(cred string) bool {
	got := digestOf(cred)
	return subtle.ConstantTimeCompare(got[:], t.digest[:]) == 1
}

// Errors of Admit besides those of Authenticate. ErrTokenRequired and
// ErrKeyRequired are 401s; ErrKeyScope (inside a *KeyError) is a 403.
var (
	ErrTokenRequired = errors.New("missing or wrong router token")
	ErrKeyRequired   = errors.New("api key required")
	ErrKeyScope      = errors.New("api key lacks the scope")
)

// Unauthenticated reports whether err from Admit is a 401 (missing, wrong,
// unknown, disabled or expired credential); other errors are 403s.
func Unauthenticated(err error) bool {
	return errors.Is(err, ErrTokenRequired) || errors.Is(err, ErrKeyRequired) ||
		errors.Is(err, ErrKeyUnknown) || errors.Is(err, ErrKeyDisabled) || errors.Is(err, ErrKeyExpired) ||
		errors.Is(err, ErrKeyRevoked)
}

// KeyRequest is the per-request input of Admit.
type KeyRequest struct {
	// Mode: anything but KeyModePermissive is treated as blocking.
	Mode  KeyMode
	Class PathClass
	// Keys is the current key set (nil: none configured).
	Keys  *KeySet
	Creds Credentials
	Now   time.Time
	// TierOf maps an alias to its tier id ("" unknown); used by a
	// restricted key's MayUseModel. Nil denies every restricted key.
	TierOf func(alias string) string
}

// Admit decides the key part of a request for the tailnet (or listener)
// principal p, following the rule at the top of this file. It returns the
// principal to use from here on (p itself, or a copy bounded by the key)
// or an error for which Unauthenticated tells 401 from 403. Error strings
// name key ids, never secrets.
func Admit(p *Principal, req KeyRequest) (*Principal, error) {
	if p == nil {
		return nil, &Denial{Reason: "no principal"}
	}
	if !req.Creds.TokenOK {
		return nil, ErrTokenRequired
	}
	if req.Class == PathOpen {
		return p, nil
	}
	blocking := req.Mode != KeyModePermissive && req.Class.Blocking()
	if req.Creds.Key == "" {
		if blocking {
			return nil, ErrKeyRequired
		}
		return p, nil
	}
	k, err := req.Keys.Authenticate(req.Creds.Key, req.Now)
	if err == ErrKeyUnknown && req.Creds.AltKey != "" {
		k, err = req.Keys.Authenticate(req.Creds.AltKey, req.Now)
	}
	switch {
	case err == nil:
	case err == ErrKeyUnknown && !blocking:
		// Permissive mode, or a class blocking mode does not protect:
		// optional auth never rejects an unknown value.
		return p, nil
	default:
		return nil, err
	}
	if sc := req.Class.Scope(); sc != "" && !k.HasScope(sc) {
		return nil, &KeyError{ID: k.ID, Err: ErrKeyScope, Detail: "needs " + string(sc)}
	}
	return ApplyKey(p, k, req.TierOf), nil
}

// ApplyKey returns a copy of p bounded by key k (p itself if k is nil):
// MayUseModel also requires k.MayUseTier(tierOf(alias)); AllModels is
// cleared when k is restricted (so "list everything" shortcuts do not
// apply); Admin requires scope admin on k and, if the caller has any
// grant, an admin grant. RPM (the grant's) is kept; the key's rate_limit
// is a separate bucket, see Limits.
func ApplyKey(p *Principal, k *APIKey, tierOf func(alias string) string) *Principal {
	if k == nil {
		return p
	}
	q := *p
	q.Key = k
	q.tierOf = tierOf
	if k.Restricted() && q.AllModels {
		q.AllModels = false
		q.Models = []string{"*"}
	}
	hasGrant := p.Identity != nil && len(p.Identity.Grants) > 0
	q.Admin = k.HasScope(ScopeAdmin) && (p.Admin || !hasGrant)
	return &q
}
