package tsrouter

import (
	"errors"
	"net/http"
	"net/netip"

	"github.com/anvil-serving/anvil-router/policy"
)

// AdminMethod is [admin.auth].method: how an operator proves admin rights
// besides a tailnet admin grant or an API key with scope admin.
type AdminMethod string

// The seed's admin auth methods. The empty method is "not configured":
// the legacy rule applies (Options.AdminToken in X-Admin-Token, else the
// router token doubles as the admin credential).
const (
	// AdminNone: no admin credential, and only on the loopback doors (the
	// dev listener, the local API listener); tailnet callers still need
	// an admin grant or an admin key.
	AdminNone AdminMethod = "none"
	// AdminBearerToken: "Authorization: Bearer <admin token>", or the
	// token in X-Admin-Token ([admin].auth_env is this method).
	AdminBearerToken AdminMethod = "bearer_token"
	// AdminBasic: "Authorization: Basic" with the configured user name
	// and password.
	AdminBasic AdminMethod = "basic"
	// AdminAPIKey: "X-API-Key: <admin token>".
	AdminAPIKey AdminMethod = "api_key"
)

// AdminAuth is the admin credential of [admin.auth]. Secrets are kept as
// digests (policy.Token) only. The zero value is "not configured".
type AdminAuth struct {
	Method AdminMethod
	// Token is the admin token of bearer_token and api_key.
	Token policy.Token
	// Username and Password are basic's credential.
	Username string
	Password policy.Token
}

// Check reports what is missing for a's method, naming fields, never
// values.
func (a AdminAuth) Check() error {
	switch a.Method {
	case "", AdminNone:
	case AdminBearerToken, AdminAPIKey:
		if !a.Token.Enabled() {
			return errors.New("admin auth " + string(a.Method) + ": no token")
		}
	case AdminBasic:
		if a.Username == "" || !a.Password.Enabled() {
			return errors.New("admin auth basic: needs a username and a password")
		}
	default:
		return errors.New("admin auth: unknown method " + string(a.Method))
	}
	return nil
}

// adminHeader says which request header carried a valid admin credential.
type adminHeader uint8

const (
	adminNoCredential adminHeader = iota
	adminInAuthorization
	adminInXAPIKey
	adminInXAdminToken
)

// credential finds a valid admin credential of a's method in r; other
// methods' headers are not looked at. Comparisons are of digests in
// constant time, and basic compares both parts every time.
func (a *AdminAuth) credential(r *http.Request) adminHeader {
	if a.Check() != nil {
		return adminNoCredential // fail closed: an unset token allows anything
	}
	switch a.Method {
	case AdminBearerToken:
		// Allows reads only a "Bearer" Authorization header.
		if auth := r.Header.Get("Authorization"); auth != "" && a.Token.Allows(auth, "") {
			return adminInAuthorization
		}
		if x := r.Header.Get("X-Admin-Token"); x != "" && a.Token.Allows("", x) {
			return adminInXAdminToken
		}
	case AdminAPIKey:
		if x := r.Header.Get("X-Api-Key"); x != "" && a.Token.Allows("", x) {
			return adminInXAPIKey
		}
	case AdminBasic:
		user, pass, ok := r.BasicAuth()
		if !ok {
			return adminNoCredential
		}
		// The user name is not a secret, but compared alike; both
		// comparisons run whatever the first says.
		userOK := policy.NewToken(a.Username).Allows("", user)
		passOK := a.Password.Allows("", pass)
		if userOK && passOK && a.Username != "" && a.Password.Enabled() {
			return adminInAuthorization
		}
	}
	return adminNoCredential
}

// loopbackCaller: method none's condition. The door is a loopback one
// (the tailnet door never qualifies, whatever the method) and, so that a
// handler served elsewhere by mistake does not hand out admin, the peer
// address is loopback too.
func loopbackCaller(r *http.Request, d door) bool {
	if d != doorDev && d != doorLocalAPI {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
