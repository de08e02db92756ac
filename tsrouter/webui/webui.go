// Package webui is the router's browser interface: server-rendered
// html/template pages and a little vanilla JavaScript, compiled into the
// binary with embed (no CDN, no external fonts: the appliance has no
// internet). The pages only render a frame; their data comes from the
// router's own JSON API (same origin), so the UI can do nothing the API
// cannot.
//
// The package also keeps what login needs and nothing else: a server-side
// session store (random 32-byte ids in an HttpOnly, SameSite=Strict cookie;
// the credential itself is never stored or sent back) and CSRF tokens
// (HMAC of the session or tailnet identity under a per-process key). Who
// the caller is and whether they are an admin is decided by the router
// (package tsrouter); this package never sees a credential.
package webui

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html static
var assets embed.FS

// CSP is the Content-Security-Policy of every UI response: no inline
// script or style, nothing from another origin, no framing.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// DefaultPrefix is the UI's default path prefix ([webui].path_prefix).
const DefaultPrefix = "/webui"

// CookieName is the session cookie's name.
const CookieName = "anvil_ui_session"

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

// maxSessions bounds the store: a login beyond it evicts the oldest.
const maxSessions = 1024

// Page names. Admin pages need the admin right; "my" is every caller's.
const (
	PageDashboard  = "dashboard"
	PageUsage      = "usage"
	PageMy         = "my"
	PageKeys       = "keys"
	PageTiers      = "tiers"
	PageRequests   = "requests"
	PageGuardrails = "guardrails"
	PageConfig     = "config"
	PageLogin      = "login"
	PageForbidden  = "forbidden"
	PageNotFound   = "notfound"
)

// NavItem is one entry of the navigation bar.
type NavItem struct {
	Name, Title string
	Admin       bool
}

// Nav is the navigation bar, in order.
var Nav = []NavItem{
	{PageDashboard, "Dashboard", true},
	{PageUsage, "Usage", true},
	{PageMy, "My usage", false},
	{PageKeys, "API keys", true},
	{PageTiers, "Tiers", true},
	{PageRequests, "Requests", true},
	{PageGuardrails, "Guardrails", true},
	{PageConfig, "Config", true},
}

// IsPage reports whether name is a navigable page and whether it needs
// the admin right.
func IsPage(name string) (admin, ok bool) {
	for _, n := range Nav {
		if n.Name == name {
			return n.Admin, true
		}
	}
	return false, false
}

// View is what a page template renders.
type View struct {
	Page   string
	Title  string
	Prefix string
	// Who names the caller ("alice@example.com on laptop", "loopback
	// session"); never a credential.
	Who   string
	Admin bool
	// CSRF is the token the page's scripts send as X-CSRF-Token.
	CSRF string
	// Session: the caller is logged in with a cookie (Logout is shown).
	Session bool
	// Features are the optional APIs this router serves ("usage",
	// "myusage", "guardrails"), so pages do not call absent ones.
	Features string
	// LoginError is the login form's message.
	LoginError string
	Nav        []NavItem
}

// UI serves the pages and keeps the sessions. Create it with New.
type UI struct {
	prefix string
	tmpl   *template.Template
	static http.Handler
	ttl    time.Duration
	now    func() time.Time
	// csrfKey signs CSRF tokens; per process, so a restart logs out.
	csrfKey [32]byte

	mu       sync.Mutex
	sessions map[string]Session
}

// Session is one login. Binding says to whom it was issued (the loopback
// listener, or a tailnet identity): a cookie replayed by someone else is
// not theirs.
type Session struct {
	ID      string
	Binding string
	Expires time.Time
	// KeyID and KeyDigest name the API key that logged in ("" for a
	// credential that lasts as long as the process, such as the admin
	// token): the router checks on every use that the key is still
	// there, unchanged, enabled and admin, so disabling, rotating or
	// deleting it ends its sessions.
	KeyID     string
	KeyDigest [32]byte
}

// Options configure a UI.
type Options struct {
	// Prefix is the path prefix ("/webui"), validated by the config.
	Prefix string
	// SessionTTL is a login's lifetime (default DefaultSessionTTL).
	SessionTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns the UI.
func New(o Options) (*UI, error) {
	t, err := template.ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	u := &UI{prefix: strings.TrimRight(o.Prefix, "/"), tmpl: t, ttl: o.SessionTTL, now: o.Now, sessions: map[string]Session{}}
	if u.ttl <= 0 {
		u.ttl = DefaultSessionTTL
	}
	if u.now == nil {
		u.now = time.Now
	}
	if _, err := rand.Read(u.csrfKey[:]); err != nil {
		return nil, err
	}
	u.static = http.StripPrefix(u.prefix+"/static/", http.FileServerFS(sub))
	return u, nil
}

// Prefix is the path prefix, without a trailing slash.
func (u *UI) Prefix() string { return u.prefix }

// Owns reports whether the URL path p is the UI's.
func (u *UI) Owns(p string) bool {
	return p == u.prefix || strings.HasPrefix(p, u.prefix+"/")
}

// Sub is p below the prefix: "" for the index, "login", "static/app.js".
func (u *UI) Sub(p string) string {
	return strings.Trim(strings.TrimPrefix(p, u.prefix), "/")
}

// SecurityHeaders sets the headers every UI response carries.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// ServeStatic serves an embedded asset (GET under prefix/static/).
func (u *UI) ServeStatic(w http.ResponseWriter, r *http.Request) {
	SecurityHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-cache")
	u.static.ServeHTTP(w, r)
}

// Render writes page with status.
func (u *UI) Render(w http.ResponseWriter, status int, v View) error {
	v.Prefix = u.prefix
	v.Nav = nil
	for _, n := range Nav {
		if v.Admin || !n.Admin {
			v.Nav = append(v.Nav, n)
		}
	}
	if v.Title == "" {
		v.Title = titleOf(v.Page)
	}
	var b bytes.Buffer
	if err := u.tmpl.ExecuteTemplate(&b, "layout.html", v); err != nil {
		return err
	}
	h := w.Header()
	SecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(b.Bytes())
	return err
}

func titleOf(page string) string {
	for _, n := range Nav {
		if n.Name == page {
			return n.Title
		}
	}
	switch page {
	case PageLogin:
		return "Log in"
	case PageForbidden:
		return "Not allowed"
	}
	return "Not found"
}

// NewSession starts the login s describes (its Binding and, for a key,
// KeyID and KeyDigest) and returns it with its ID and expiry.
func (u *UI) NewSession(s Session) (Session, error) {
	var id [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Session{}, err
	}
	s.ID, s.Expires = hex.EncodeToString(id[:]), u.now().Add(u.ttl)
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	for k, old := range u.sessions {
		if !now.Before(old.Expires) {
			delete(u.sessions, k)
		}
	}
	for len(u.sessions) >= maxSessions {
		var oldest string
		for k, old := range u.sessions {
			if oldest == "" || old.Expires.Before(u.sessions[oldest].Expires) {
				oldest = k
			}
		}
		delete(u.sessions, oldest)
	}
	u.sessions[s.ID] = s
	return s, nil
}

// Session returns the request's live session bound to binding.
func (u *UI) Session(r *http.Request, binding string) (Session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 64 {
		return Session{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.sessions[c.Value]
	if !ok {
		return Session{}, false
	}
	if !u.now().Before(s.Expires) {
		delete(u.sessions, c.Value)
		return Session{}, false
	}
	if s.Binding != binding {
		return Session{}, false
	}
	return s, true
}

// EndSession forgets a session.
func (u *UI) EndSession(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.sessions, id)
}

// Cookie is the session cookie for s (secure over TLS); a zero Session
// clears it.
func (u *UI) Cookie(s Session, secure bool) *http.Cookie {
	// Path is "/", not the prefix: the cookie must reach the API the
	// pages call, which lives outside it. SameSite=Strict and the CSRF
	// check keep it from acting for another site.
	c := &http.Cookie{Name: CookieName, Value: s.ID, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode, Expires: s.Expires}
	if s.ID == "" {
		c.MaxAge = -1
		c.Expires = time.Time{}
	}
	return c
}

// CSRFToken is the CSRF token of a session id or a tailnet identity.
func (u *UI) CSRFToken(subject string) string {
	m := hmac.New(sha256.New, u.csrfKey[:])
	m.Write([]byte("anvil-ui-csrf\x00" + subject))
	return hex.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether token is subject's CSRF token.
func (u *UI) CheckCSRF(subject, token string) bool {
	if token == "" || subject == "" {
		return false
	}
	want := u.CSRFToken(subject)
	return hmac.Equal([]byte(want), []byte(token))
}

// CrossSite reports whether a request came from a browser on another
// origin: an Origin other than the request's own scheme and host, or
// Sec-Fetch-Site saying another site. Requests without either header are
// not from a browser (curl, SDKs) and are not cross-site.
func CrossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return true
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		return origin != scheme+"://"+r.Host
	}
	return false
}

// FromBrowser reports whether a request carries the headers browsers add
// (Origin or Sec-Fetch-Site): a write from a browser must prove it came
// from the UI.
func FromBrowser(r *http.Request) bool {
	return r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != ""
}

// StateChanging reports whether method changes state.
func StateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
