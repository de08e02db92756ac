package tsrouter

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter/webui"
)

// The web UI's place in the router (the pages themselves are package
// webui). Who may see what:
//
//   - On the tailnet the WhoIs identity is the login: an admin grant sees
//     the admin pages, everyone else their own page. Nothing is stored in
//     the browser.
//   - Where no identity says enough (the loopback listener; the tailnet
//     when the router token is required on top), the admin enters the
//     admin credential once; the router checks it exactly as the admin
//     API would (credentialIsAdmin) and sets an HttpOnly, SameSite=Strict
//     session cookie whose value is a random id in a server-side store.
//     That session then stands for the admin credential (and the router
//     token) on the admin and metadata views the pages call.
//   - Every state-changing request a browser sends to an admin route or
//     to the UI must come from the router's own origin and carry the
//     page's CSRF token (checkBrowserWrite): a forged cross-site request
//     carries the WhoIs identity or the cookie, but not the token.

// initWebUI creates the UI at prefix ("" none).
func (h *Handler) initWebUI(prefix string) {
	if prefix == "" {
		return
	}
	ui, err := webui.New(webui.Options{Prefix: prefix})
	if err != nil {
		panic(err) // the embedded templates are broken: a build defect
	}
	h.ui = ui
}

// uiServed says whether the UI's routes exist; uiRedirects whether /ui
// redirects to a prefix of another name.
func (h *Handler) uiServed() bool    { return h.ui != nil }
func (h *Handler) uiRedirects() bool { return h.ui != nil && h.ui.Prefix() != "/ui" }

// uiPattern is the UI route's pattern under the configured prefix: pat
// names the default prefix (the /ui redirects keep theirs).
func (h *Handler) uiPattern(pat string) string {
	if h.ui == nil || !strings.HasPrefix(pat, webui.DefaultPrefix) {
		return pat
	}
	return h.ui.Prefix() + strings.TrimPrefix(pat, webui.DefaultPrefix)
}

// uiBinding names to whom a session or CSRF token belongs: the tailnet
// identity, or the loopback listener.
func uiBinding(rec *record) string {
	if id := rec.principal.Identity; rec.door == doorTailnet && id != nil {
		return "tailnet\x00" + id.Node + "\x00" + id.User + "\x00" + id.IP.String()
	}
	return "loopback\x00" + rec.door.String()
}

// uiSession is the request's live UI session, if any. A session opened
// with an API key that has since been disabled, rotated, deleted or lost
// its admin scope is ended here.
func (h *Handler) uiSession(r *http.Request, rec *record) (webui.Session, bool) {
	if h.ui == nil {
		return webui.Session{}, false
	}
	s, ok := h.ui.Session(r, uiBinding(rec))
	if ok && !h.sessionKeyLive(s) {
		h.ui.EndSession(s.ID)
		return webui.Session{}, false
	}
	return s, ok
}

// sessionClass: the routes a UI session may stand for the credential on —
// what the pages call; never inference.
func sessionClass(c policy.PathClass) bool {
	switch c {
	case policy.PathAdmin, policy.PathMetadata, policy.PathMetrics, policy.PathModels:
		return true
	}
	return false
}

// uiAdmit is the UI's part of admitting a caller, after admitCredentials
// answered err: a valid session stands for the admin credential (and the
// router token) on the views the pages call, and the UI's own routes need
// no token (they carry no data; without a session they offer the login).
// A request that presented credentials of its own is judged by them only.
func (h *Handler) uiAdmit(r *http.Request, rec *record, rt *route, err error) error {
	if h.ui == nil {
		return err
	}
	_, session := h.uiSession(r, rec)
	session = session && sessionClass(rt.class)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.kind != kindUnauthorized || presentsCredentials(r) || !(session || rt.ui) {
			return err
		}
		// Where blocking mode requires an API key, the session is no key.
		if h.keys != nil && h.keys.Mode() != policy.KeyModePermissive && rt.class.Blocking() {
			return err
		}
		// rec.principal is still the door's.
	}
	if session {
		p := *rec.principal
		p.Admin = true
		rec.principal = &p
	}
	return nil
}

func presentsCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" || r.Header.Get("X-Admin-Token") != ""
}

// checkBrowserWrite guards state-changing requests to admin routes and to
// the UI against cross-site request forgery. A request authorized by a
// UI session, or sent by a browser (it has Origin or Sec-Fetch-Site; a
// tailnet browser is authenticated by WhoIs, so a forged request from
// another tab would carry the identity), must come from this origin and
// carry the CSRF token of its session or identity (X-CSRF-Token, or the
// csrf field of the UI's own forms). curl and the SDKs send neither
// header and hold their credential themselves: they are not affected.
func (h *Handler) checkBrowserWrite(r *http.Request, rec *record, rt *route, body []byte) error {
	if !webui.StateChanging(r.Method) {
		return nil
	}
	if !(rt.admin || rt.ui) {
		// Any other route: no CORS is served, so the only cross-site
		// writes a browser can make are "simple" ones (a text/plain form
		// can carry a JSON body), which would run and bill inference as
		// the tailnet user whose browser it is. No real client sends them.
		if webui.FromBrowser(r) && webui.CrossSite(r) {
			return errCrossSite.withDetail("cross-site browser " + r.Method + " refused (Origin " + safeOrigin(r) + ")")
		}
		return nil
	}
	sess, session := h.uiSession(r, rec)
	if !session && !webui.FromBrowser(r) {
		return nil
	}
	if webui.CrossSite(r) {
		return errCrossSite.withDetail("cross-site " + r.Method + " refused (Origin " + safeOrigin(r) + ")")
	}
	if h.ui == nil {
		return nil // no UI, no token to carry: the origin check is all
	}
	subject := uiBinding(rec)
	if session {
		subject = sess.ID
	}
	token := r.Header.Get("X-CSRF-Token")
	if token == "" && rt.ui && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			token = form.Get("csrf")
		}
	}
	if !h.ui.CheckCSRF(subject, token) {
		return errCSRF.withDetail("browser " + r.Method + " without the UI's CSRF token")
	}
	return nil
}

// safeOrigin is the Origin header for the audit line, bounded.
func safeOrigin(r *http.Request) string {
	o := r.Header.Get("Origin")
	if len(o) > 100 {
		o = o[:100]
	}
	return strings.Map(func(c rune) rune {
		if c < 0x21 || c > 0x7e {
			return '_'
		}
		return c
	}, o)
}

// uiAdmin says whether the UI's caller is an admin: a session (only
// admins get one) or a tailnet admin grant (both in rec.principal), or
// what the request's own headers prove on an admin route (a script with
// the credential; [admin.auth] method none on loopback). isAdmin on rec
// alone would not do: on the UI's routes an absent router token was waved
// through (uiAdmit), and the legacy rule assumes it was presented.
func (h *Handler) uiAdmin(r *http.Request, rec *record) bool {
	if rec.principal.Admin {
		return true
	}
	probe := &record{door: rec.door, principal: rec.principal}
	if err := h.admitCredentials(r, probe, policy.PathAdmin); err != nil {
		return false
	}
	return h.isAdmin(r, probe)
}

// credentialIsAdmin checks a credential typed into the login form
// exactly as the admin API checks one in a header — in each place an
// admin credential can travel ([admin.auth] bearer_token or the router
// token in Authorization and X-Admin-Token, api_key in X-API-Key, basic
// as "user:password"), through admitCredentials and isAdmin. The
// caller's own admin grant does not count here, so a login proves the
// credential.
func (h *Handler) credentialIsAdmin(w *recorder, r *http.Request, rec *record, cred string) (bool, *policy.APIKey) {
	base := *rec.principal
	base.Admin = false
	candidates := []http.Header{
		{"Authorization": {"Bearer " + cred}, "X-Admin-Token": {cred}},
		{"X-Api-Key": {cred}},
	}
	if user, pass, ok := strings.Cut(cred, ":"); ok {
		r2 := &http.Request{Header: http.Header{}}
		r2.SetBasicAuth(user, pass)
		candidates = append(candidates, r2.Header)
	}
	for _, hdr := range candidates {
		r2 := r.Clone(r.Context())
		r2.Header = hdr
		probe := &record{door: rec.door, principal: &base}
		if h.admitCredentials(r2, probe, policy.PathAdmin) == nil && h.isAdmin(r2, probe) {
			return true, probe.principal.Key
		}
	}
	return false, nil
}

// sessionKeyLive says whether the API key a session was opened with is
// still there, unchanged (not rotated), enabled, unexpired and admin.
// Sessions opened with another credential (the admin token, basic) last
// as long as it does: until the process restarts.
func (h *Handler) sessionKeyLive(s webui.Session) bool {
	if s.KeyID == "" {
		return true
	}
	if h.keys == nil {
		return false
	}
	k, ok := h.keys.Set().Get(s.KeyID)
	return ok && k.Digest == s.KeyDigest && k.Enabled && (k.ExpiresAt.IsZero() || time.Now().Before(k.ExpiresAt)) && k.HasScope(policy.ScopeAdmin)
}

// uiFeatures are the optional APIs this router serves, for the pages
// (so they do not call absent ones): "nokey-<name>" where blocking mode
// wants an API key the caller's browser does not send.
func (h *Handler) uiFeatures(rec *record) string {
	var f []string
	for _, c := range []struct{ name, path string }{
		{"usage", "/admin/stats/usage"}, {"myusage", "/v1/usage"}, {"guardrails", "/admin/guardrails"},
	} {
		rt := h.routeOf(c.path)
		switch {
		case rt == noRoute:
		case h.keys != nil && h.keys.Mode() != policy.KeyModePermissive && rt.class.Blocking() && rec.principal.Key == nil:
			f = append(f, "nokey-"+c.name)
		default:
			f = append(f, c.name)
		}
	}
	return strings.Join(f, " ")
}

// serveUIRedirect sends /ui and /ui/... to the configured prefix.
func (h *Handler) serveUIRedirect(w *recorder, r *http.Request, rec *record) error {
	webui.SecurityHeaders(w.Header())
	http.Redirect(w, r, h.ui.Prefix(), http.StatusFound)
	return nil
}

// serveUI serves the UI: static assets, login and logout, and the pages.
func (h *Handler) serveUI(w *recorder, r *http.Request, rec *record) error {
	sub := h.ui.Sub(r.URL.Path)
	if strings.HasPrefix(sub, "static/") {
		if !isGet(r.Method) {
			return errMethod("GET")
		}
		rec.quiet = true
		h.ui.ServeStatic(w, r)
		return nil
	}
	sess, session := h.uiSession(r, rec)
	admin := h.uiAdmin(r, rec)
	// A login is offered where no identity says enough: off the tailnet,
	// or on it when the router token is required on top. (With [admin.auth]
	// method none a loopback caller is an admin already: uiAdmin.)
	loginOffered := rec.door != doorTailnet || h.token.Enabled()
	needLogin := loginOffered && !session && !admin
	csrfSubject := uiBinding(rec)
	if session {
		csrfSubject = sess.ID
	}
	v := webui.View{Admin: admin, CSRF: h.ui.CSRFToken(csrfSubject), Session: session, Features: h.uiFeatures(rec), Who: uiWho(rec, session)}
	prefix := h.ui.Prefix()
	switch sub {
	case "login":
		if r.Method == http.MethodPost {
			return h.uiLogin(w, r, rec, v)
		}
		if !isGet(r.Method) {
			return errMethod("GET, POST")
		}
		if !needLogin {
			http.Redirect(w, r, prefix, http.StatusSeeOther)
			return nil
		}
		v.Page, v.Admin = webui.PageLogin, false
		return h.ui.Render(w, http.StatusOK, v)
	case "logout":
		if r.Method != http.MethodPost {
			return errMethod("POST")
		}
		if session {
			h.ui.EndSession(sess.ID)
			rec.detail = "webui logout"
		}
		http.SetCookie(w, h.ui.Cookie(webui.Session{}, r.TLS != nil))
		http.Redirect(w, r, prefix+"/login", http.StatusSeeOther)
		return nil
	}
	if !isGet(r.Method) {
		return errMethod("GET")
	}
	if needLogin {
		http.Redirect(w, r, prefix+"/login", http.StatusSeeOther)
		return nil
	}
	if sub == "" {
		sub = webui.PageMy
		if admin {
			sub = webui.PageDashboard
		}
		http.Redirect(w, r, prefix+"/"+sub, http.StatusSeeOther)
		return nil
	}
	adminPage, ok := webui.IsPage(sub)
	switch {
	case !ok:
		v.Page = webui.PageNotFound
		return h.ui.Render(w, http.StatusNotFound, v)
	case adminPage && !admin:
		v.Page = webui.PageForbidden
		rec.detail = "webui page " + sub + " refused: not an admin"
		return h.ui.Render(w, http.StatusForbidden, v)
	}
	v.Page = sub
	return h.ui.Render(w, http.StatusOK, v)
}

// loginsPerMinute bounds login attempts per identity.
const loginsPerMinute = 10

// uiLogin checks the login form's credential and starts a session.
func (h *Handler) uiLogin(w *recorder, r *http.Request, rec *record, v webui.View) error {
	// Guessing is slow: loginsPerMinute attempts per identity (the whole
	// loopback listener is one).
	if ok, wait := h.limiter.Allow("webui-login\x00"+uiBinding(rec), loginsPerMinute, time.Now()); !ok {
		return errRateLimited(policy.RetryAfterSeconds(wait)).withDetail("webui login attempts over " + itoa(loginsPerMinute) + "/min")
	}
	form, err := url.ParseQuery(string(w.body))
	cred := form.Get("credential")
	ok, key := false, (*policy.APIKey)(nil)
	if err == nil && cred != "" {
		ok, key = h.credentialIsAdmin(w, r, rec, cred)
	}
	if !ok {
		rec.detail = "webui login refused"
		v.Page, v.Admin, v.Session = webui.PageLogin, false, false
		v.LoginError = "That is not an admin credential of this router."
		return h.ui.Render(w, http.StatusUnauthorized, v)
	}
	if old, ok := h.uiSession(r, rec); ok {
		h.ui.EndSession(old.ID)
	}
	login := webui.Session{Binding: uiBinding(rec)}
	if key != nil {
		login.KeyID, login.KeyDigest = key.ID, key.Digest
	}
	s, err := h.ui.NewSession(login)
	if err != nil {
		return errInternal.withDetail("webui session: " + err.Error())
	}
	rec.detail = "webui login"
	http.SetCookie(w, h.ui.Cookie(s, r.TLS != nil))
	http.Redirect(w, r, h.ui.Prefix(), http.StatusSeeOther)
	return nil
}

// uiWho names the caller for the page header: never a credential.
func uiWho(rec *record, session bool) string {
	if id := rec.principal.Identity; id != nil {
		if id.User != "" {
			return id.User + " on " + id.Node
		}
		return id.Node
	}
	if session {
		return "admin (session)"
	}
	return ""
}

// configView is a view of the config in force, swapped whole.
type configView struct{ v any }

// SetConfigView sets what GET /admin/config shows: the config in force
// (config.View), replaced when a reload changes it.
func (h *Handler) SetConfigView(v any) { h.configView.Store(&configView{v}) }

// serveConfig serves GET /admin/config: the effective config with
// secrets as variable names only (config.View), and its hash.
func (h *Handler) serveConfig(w *recorder, r *http.Request, rec *record) error {
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "router_config", "config_hash": h.configHash, "version": h.version, "config": h.configView.Load().v})
	return nil
}
