package tsrouter

import (
	"errors"
	"net/http"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// admitCredentials checks the router token and any API key for the
// request and narrows rec.principal by the key's policy. The rule (policy
// package): the tailnet grant bounds what any key used from that node can
// reach; the router token is checked independently.
//
// On admin routes a valid admin credential ([admin.auth]) stands in for
// the router token, and the header it came in is not read again as the
// router token or an API key: "Authorization: Bearer <admin token>" alone
// passes the door there, and so does the router token in Authorization
// with the admin credential in X-Admin-Token or X-API-Key.
func (h *Handler) admitCredentials(r *http.Request, rec *record, class policy.PathClass) error {
	authorization, xAPIKey := r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")
	if class == policy.PathAdmin {
		switch rec.adminCred = h.adminAuth.credential(r); rec.adminCred {
		case adminInAuthorization:
			authorization = ""
		case adminInXAPIKey:
			xAPIKey = ""
		}
	}
	creds := policy.SplitCredentials(h.token, authorization, xAPIKey)
	// TokenOK is also true when no token is configured: only a token
	// that exists and was sent is a secret.
	tokenSent := h.token.Enabled() && creds.TokenOK
	if rec.adminCred != adminNoCredential {
		creds.TokenOK = true
	}
	req := policy.KeyRequest{Mode: policy.KeyModePermissive, Class: class, Creds: creds, Now: time.Now(), TierOf: h.tierOf}
	if h.keys != nil {
		req.Mode, req.Keys = h.keys.Mode(), h.keys.Set()
	}
	p, err := policy.Admit(rec.principal, req)
	switch {
	case err == nil:
	case policy.Unauthenticated(err):
		return errUnauthorized.withDetail(credentialDetail(err))
	default:
		return errKeyForbidden.withDetail(credentialDetail(err))
	}
	// On the loopback API door there is no identity: the token or a key
	// must have been presented.
	if rec.door == doorLocalAPI && !h.token.Enabled() && p.Key == nil && rec.adminCred == adminNoCredential {
		return errUnauthorized.withDetail("the local API needs the router token or an API key")
	}
	rec.principal = p
	rec.secretAuth = tokenSent || rec.adminCred != adminNoCredential || p.Key != nil
	return nil
}

// credentialDetail is the operator's view of a refusal: key ids, never
// secrets (policy errors never carry them).
func credentialDetail(err error) string {
	var ke *policy.KeyError
	if errors.As(err, &ke) {
		return "api key " + ke.ID + ": " + ke.Error()
	}
	return err.Error()
}

// tierOf maps an alias to its tier id, for keys restricted to tiers.
func (h *Handler) tierOf(alias string) string {
	if t, ok := h.backends.Lookup(alias); ok {
		return t.ID
	}
	return ""
}
