package tsrouter

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// door says which listener a request came through; each has its own rules.
type door uint8

const (
	doorDev      door = iota // loopback dev listener: no identity, token if set
	doorTailnet              // tailnet: WhoIs identity and grants, token on top
	doorLocal                // loopback local listener: /healthz only
	doorLocalAPI             // loopback local listener with the API: token always
)

func (d door) String() string {
	return [...]string{"dev", "tailnet", "local", "local-api"}[d]
}

// unrestricted is the principal of doors without a tailnet identity.
var unrestricted = policy.Unrestricted()

// record is what the audit line says about one request. Handlers fill it
// in as they learn things; it never holds prompt text or secrets.
type record struct {
	start     time.Time
	door      door
	principal *policy.Principal
	// adminCred: where a valid admin credential came (admin routes only).
	adminCred adminHeader
	// secretAuth: a secret the caller sent authenticated it (the router
	// token, an API key, the admin credential), not only something a
	// browser brings along by itself (tailnet identity, UI session,
	// loopback under [admin.auth] none). See rebinding.go.
	secretAuth bool
	alias      string
	tier       string
	events     int
	// detail explains a failure to the operator (never to the caller).
	detail string
	// quiet marks liveness probes, logged at debug level only.
	quiet bool
	// upstream is the time spent waiting for the serve before the
	// response started (headers, first event or whole reply); upstreamAll
	// adds the waits for the rest of a stream.
	upstream    time.Duration
	upstreamAll time.Duration
	// ttft is when the first event reached the caller (streams only).
	ttft time.Duration

	// Correlation ids (sanitized) for the decision log.
	requestID, workbenchRunID, taskID string
	// The decision: why the request was (not) served, and its outcome
	// ("served", "skipped", "error"), for chat requests with a known alias.
	reason, outcome          string
	promptTokens, compTokens int
	requestBytes             int
	// kind is the decision record's kind ("" is chat).
	kind string
	// guard is the guardrail verdicts and entity counts (nil: none ran).
	guard *guardNote
	// Usage accounting: the serve's cached and reasoning tokens, whether
	// the token counts are the serve's (else the router's estimate),
	// whether the answer was streamed, and the day budgets the request
	// passed and spends from.
	cachedTokens, reasoningTokens int
	usageReported, streamed       bool
	budgets                       []string
}

// recorder captures the status and size of a response for the audit line.
// It keeps http.Flusher working for streams.
type recorder struct {
	http.ResponseWriter
	// tailnet is the tailnet door's identity source (nil on other doors).
	tailnet *tailnetDoor
	// body is the request body, read by dispatch before the handler.
	body   []byte
	status int
	bytes  int64
	rec    record
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// audit writes the one structured line per request: who (node, user, tags,
// address), what (alias, tier), the outcome (status, duration, bytes).
func (h *Handler) audit(w *recorder, r *http.Request) {
	rec := &w.rec
	level := slog.LevelInfo
	switch {
	case rec.quiet:
		level = slog.LevelDebug
	case w.status >= 500:
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !h.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs,
		slog.String("door", rec.door.String()),
		slog.String("method", r.Method),
		slog.String("path", maskPath(r.URL.Path)),
		slog.Int("status", w.status),
		slog.Float64("ms", float64(time.Since(rec.start).Microseconds())/1000),
		slog.Int64("bytes", w.bytes),
	)
	if p := rec.principal; p != nil && p.Identity != nil {
		id := p.Identity
		attrs = append(attrs, slog.String("node", id.Node), slog.String("user", id.User), slog.String("ip", id.IP.String()))
		if len(id.Tags) > 0 {
			attrs = append(attrs, slog.String("tags", strings.Join(id.Tags, ",")))
		}
	} else if rec.door != doorTailnet {
		attrs = append(attrs, slog.String("remote", r.RemoteAddr))
	}
	if p := rec.principal; p != nil && p.Key != nil {
		attrs = append(attrs, slog.String("key_id", p.Key.ID), slog.String("key", p.Key.Masked()))
	}
	if rec.adminCred != adminNoCredential {
		// How admin was proven: the method, never the credential.
		attrs = append(attrs, slog.String("admin_auth", string(h.adminAuth.Method)))
	}
	if rec.alias != "" {
		attrs = append(attrs, slog.String("alias", rec.alias))
	}
	if rec.tier != "" {
		attrs = append(attrs, slog.String("tier", rec.tier))
	}
	if rec.events > 0 {
		attrs = append(attrs, slog.Int("events", rec.events))
	}
	if g := rec.guard.String(); g != "" {
		attrs = append(attrs, slog.String("guardrails", g))
	}
	if rec.detail != "" {
		attrs = append(attrs, slog.String("detail", rec.detail))
	}
	h.log.LogAttrs(ctx, level, "request", attrs...)
}

// maskPath is the request path as the audit line shows it: a segment that
// looks like a credential a caller put in the wrong place (a key prefix,
// a JWT, or a long unbroken token) is replaced by "***".
func maskPath(p string) string {
	if !strings.ContainsFunc(p, func(r rune) bool { return r == '-' || r == '_' || r >= '0' && r <= '9' }) {
		return p // no segment can be key-shaped: fast path for the usual routes
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if keyShaped(s) {
			segs[i] = "***"
		}
	}
	return strings.Join(segs, "/")
}

// keyPrefixes start the credentials callers carry: OpenAI-style and this
// router's keys, Anthropic, Tailscale auth keys, Hugging Face, GitHub,
// AWS access key ids, Slack, JWTs.
var keyPrefixes = []string{"sk-", "sk_", "tskey-", "hf_", "ghp_", "gho_", "ghs_", "github_pat_", "AKIA", "ASIA", "xoxb-", "xoxp-", "eyJ"}

func keyShaped(s string) bool {
	for _, p := range keyPrefixes {
		if len(s) > len(p)+8 && strings.HasPrefix(s, p) {
			return true
		}
	}
	if len(s) < 32 {
		return false
	}
	// A long run of token characters with letters and digits mixed.
	letters, digits := false, false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters = true
		case r == '-', r == '_', r == '.', r == '~', r == '+', r == '=':
		default:
			return false
		}
	}
	return letters && digits
}
