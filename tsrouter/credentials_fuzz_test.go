package tsrouter_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// FuzzCredentialHeaders: whatever a caller puts in Authorization and
// X-Api-Key, the front door answers 200, 401 or 403 — never a panic or a
// 5xx — and never echoes the presented credential back.
func FuzzCredentialHeaders(f *testing.F) {
	for _, s := range [][2]string{
		{"Bearer " + partnerKey, routerToken},
		{"bearer   " + partnerKey + "  ", ""},
		{"", partnerKey},
		{"Basic dXNlcjpwYXNz", routerToken},
		{"Bearer sk-unknown-0123456789abcdef", ""},
		{"Bearer", ""},
		{"Bearer sk-anvil-" + strings.Repeat("x", 300), routerToken},
	} {
		f.Add(s[0], s[1])
	}
	_, url := startFake(f, fakeserve.Options{})
	h := newHandler(f, keysConfig(url, "blocking"), routerOpts{token: routerToken, env: map[string]string{"PARTNER_KEY": partnerKey}}, nil)
	f.Fuzz(func(t *testing.T, authz, xkey string) {
		req := httptest.NewRequest("GET", "/v1/models", nil)
		// Only values net/http would let through from a real client.
		if !validHeaderValue(authz) || !validHeaderValue(xkey) {
			return
		}
		req.Header.Set("Authorization", authz)
		req.Header.Set("X-Api-Key", xkey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusUnauthorized, http.StatusForbidden:
		default:
			t.Fatalf("status %d for %q / %q: %s", w.Code, authz, xkey, w.Body)
		}
		for _, secret := range []string{strings.TrimSpace(strings.TrimPrefix(authz, "Bearer ")), strings.TrimSpace(xkey)} {
			if len(secret) >= 8 && strings.Contains(w.Body.String(), secret) {
				t.Fatalf("credential %q echoed: %s", secret, w.Body)
			}
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
