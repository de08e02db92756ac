// Package policy makes the router's access decisions as pure functions: no
// I/O, no clocks it does not get passed, no globals. It checks the router
// token of ADR-0004 and turns a tailnet identity (node, user, tags, grants)
// plus the operator's rules into a Principal: which models the caller may
// use, whether it is an admin, its rate limit. API keys (apikeys.go,
// keysfile.go) narrow that Principal per request (keyaccess.go), and
// ratelimit.go enforces the limits.
package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Token is the shared router token. The zero value means token auth is off.
// Only a digest is kept in memory next to the request path, so a compare
// costs the same whatever the caller sent.
type Token struct {
	digest [sha256.Size]byte
	set    bool
}

// NewToken returns a Token for secret; an empty secret turns auth off.
func NewToken(secret string) Token {
	if secret == "" {
		return Token{}
	}
	return Token{digest: sha256.Sum256([]byte(secret)), set: true}
}

// Enabled reports whether requests must present the token.
func (t Token) Enabled() bool { return t.set }

// Credential extracts the caller's credential the way the Python router
// did: "Authorization: Bearer <t>" (scheme case-insensitive, value trimmed)
// or "x-api-key: <t>". An Authorization header with another scheme yields
// no credential even if x-api-key is present, so a misconfigured client is
// told so rather than half-authenticated.
func Credential(authorization, xAPIKey string) (string, bool) {
	if authorization != "" {
		scheme, value, ok := strings.Cut(strings.TrimSpace(authorization), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		value = strings.TrimSpace(value)
		return value, value != ""
	}
	xAPIKey = strings.TrimSpace(xAPIKey)
	return xAPIKey, xAPIKey != ""
}

// Allows reports whether the request headers carry the token. With auth off
// it always allows.
func (t Token) Allows(authorization, xAPIKey string) bool {
	if !t.set {
		return true
	}
	cred, ok := Credential(authorization, xAPIKey)
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(cred))
	return subtle.ConstantTimeCompare(got[:], t.digest[:]) == 1
}
