package backends

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errIdle is the cancellation cause when the serve is silent for longer
// than the tier's timeout (before headers, or between reads).
var errIdle = errors.New("upstream idle timeout")

// maxResponseBytes caps a buffered (non-streaming) upstream reply.
const maxResponseBytes = 64 << 20

// maxErrorBodyBytes caps how much of an upstream error body is read.
const maxErrorBodyBytes = 64 << 10

// exchange is one in-flight upstream request. Its context is cancelled by
// the caller going away, by the idle watchdog, or by Close — whichever comes
// first — so a serve never keeps generating for nobody.
type exchange struct {
	resp    *http.Response
	body    io.Reader // resp.Body behind the idle watchdog
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	timeout time.Duration
	once    sync.Once
}

// endpoint is one upstream URL with what calling it needs.
type endpoint struct {
	url        string
	authHeader string // the header carrying authValue; "" means Authorization
	authValue  string // "Bearer <token>", a bare Anthropic key, or ""
	anthropic  bool   // an Anthropic Messages serve: send anthropic-version
	timeout    time.Duration
	client     *http.Client
	prober     *prober // marked down on a refused connection; may be nil
}

// anthropicVersion is the Messages API version the router speaks to
// Anthropic-dialect serves: the anthropic-version header every request to
// them carries.
var anthropicVersion = []string{"2023-06-01"}

// endpoint is the tier's chat endpoint.
func (t *Tier) endpoint() endpoint {
	return endpoint{url: t.chatURL, authHeader: t.authHeader, authValue: t.authValue, anthropic: t.Dialect == "anthropic", timeout: t.timeout, client: t.client, prober: t.prober}
}

// open sends body to the tier's chat endpoint.
func (t *Tier) open(parent context.Context, body []byte, stream bool) (*exchange, error) {
	return t.endpoint().open(parent, body, stream)
}

// open posts body and returns once the serve has answered with headers.
// Failures before that are classified here.
func (t endpoint) open(parent context.Context, body []byte, stream bool) (*exchange, error) {
	ctx, cancel := context.WithCancelCause(parent)
	x := &exchange{ctx: ctx, cancel: cancel, timeout: t.timeout}
	x.timer = time.AfterFunc(t.timeout, func() { cancel(errIdle) })

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		x.Close()
		return nil, failed("building upstream request: " + err.Error())
	}
	req.Header = http.Header{"Content-Type": {"application/json"}}
	if stream {
		req.Header["Accept"] = []string{"text/event-stream"}
	} else {
		req.Header["Accept"] = []string{"application/json"}
	}
	if t.anthropic {
		req.Header["Anthropic-Version"] = anthropicVersion
	}
	if t.authValue != "" {
		name := t.authHeader
		if name == "" {
			name = "Authorization"
		}
		req.Header[name] = []string{t.authValue}
	}
	resp, err := roundTrip(t.client, req)
	if err != nil {
		cause := context.Cause(ctx)
		x.Close()
		switch {
		case parent.Err() != nil:
			return nil, ErrClientGone
		case errors.Is(cause, errIdle):
			return nil, unavailable("no response headers within " + t.timeout.String())
		default:
			// Refused, reset or unreachable before any answer: the serve
			// cannot take the request, which is the failover signal.
			reason := transportReason(err)
			if reason == "connection refused" && t.prober != nil {
				// Nothing listens: refuse the next requests without
				// dialing until a probe sees the serve back.
				t.prober.markDown(ReasonRefused)
			}
			return nil, unavailable("connecting to serve: " + reason)
		}
	}
	x.resp = resp
	x.body = &idleReader{r: resp.Body, x: x}
	x.timer.Reset(t.timeout)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(x.body, maxErrorBodyBytes))
		x.Close()
		e := classifyStatus(resp.StatusCode, b, resp.Header.Get("Retry-After"))
		if key := strings.TrimPrefix(t.authValue, "Bearer "); key != "" && strings.Contains(e.Message, key) {
			// A serve echoing the tier's own key: the shape rules should
			// already have refused it; this holds for any key shape.
			e.Message = classifyStatus(resp.StatusCode, nil, "").Message
		}
		return nil, e
	}
	return x, nil
}

// roundTrip sends req on the client's transport directly. http.Client adds
// nothing the relay uses — it never follows redirects (a 3xx is a
// classified failure either way) and has no client timeout — but costs a
// header copy and a redirect bookkeeping per request on the hot path.
func roundTrip(c *http.Client, req *http.Request) (*http.Response, error) {
	if c.Transport == nil {
		return c.Do(req)
	}
	return c.Transport.RoundTrip(req)
}

// transportReason names a transport failure without echoing addresses.
func transportReason(err error) string {
	s := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case strings.Contains(s, "EOF"):
		return "connection closed before response"
	case strings.Contains(s, "timeout"):
		return "connect timeout"
	case strings.Contains(s, "no such host"):
		return "unknown host"
	}
	return "transport error"
}

// readErr classifies an error while reading the body after headers.
func (x *exchange) readErr(err error) error {
	if errors.Is(context.Cause(x.ctx), errIdle) {
		return interrupted("serve silent for " + x.timeout.String())
	}
	if x.ctx.Err() != nil {
		return ErrClientGone
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return interrupted("serve closed the stream early")
	}
	return interrupted("reading from serve: " + transportReason(err))
}

// Close ends the exchange: stops the watchdog, cancels the upstream request
// (which closes its connection if the body was not fully read — vLLM aborts
// generation when it sees that) and releases the body.
func (x *exchange) Close() {
	x.once.Do(func() {
		x.timer.Stop()
		if x.resp != nil {
			x.resp.Body.Close()
		}
		x.cancel(context.Canceled)
	})
}

// idleReader runs the watchdog only while the router waits on the serve:
// armed when a read starts, stopped when it returns. The timeout bounds
// the serve's silences, not the whole response — and not the time the
// router spends writing to a caller that reads slowly, which is the
// caller's (the stream's write-stall deadline deals with that).
type idleReader struct {
	r io.Reader
	x *exchange
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.x.timer.Reset(ir.x.timeout)
	n, err := ir.r.Read(p)
	ir.x.timer.Stop()
	return n, err
}

// Reply is a buffered upstream reply to a non-streaming request.
type Reply struct {
	Body        []byte
	ContentType string
}

// Complete sends a non-streaming request in the tier's dialect and returns
// the serve's whole reply body, untouched.
func (t *Tier) Complete(ctx context.Context, body []byte) (*Reply, error) {
	return t.endpoint().complete(ctx, body)
}

func (t endpoint) complete(ctx context.Context, body []byte) (*Reply, error) {
	x, err := t.open(ctx, body, false)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	b, err := readAllLimit(x.body, x.resp.ContentLength, maxResponseBytes)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, failed("serve reply exceeds 64 MiB")
		}
		e := x.readErr(err)
		if e == ErrClientGone {
			return nil, e
		}
		// Nothing was sent to the caller yet: a broken reply is a failure,
		// not an interruption.
		return nil, failed(e.Error())
	}
	return &Reply{Body: b, ContentType: x.resp.Header.Get("Content-Type")}, nil
}

var errTooLarge = errors.New("too large")

// readAllLimit reads r to EOF, failing past limit. With a known
// Content-Length it reads into one buffer of exactly that size (a
// bytes.Buffer sized to it still reallocates once, for its minimum read
// space, doubling the copy of every reply), then reads on to the body's
// end, which is what hands the connection back to the pool.
func readAllLimit(r io.Reader, contentLength int64, limit int64) ([]byte, error) {
	if contentLength > limit {
		return nil, errTooLarge
	}
	if contentLength < 0 {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > limit {
			return nil, errTooLarge
		}
		return b, nil
	}
	b := make([]byte, contentLength)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	// The body ends at Content-Length; this read only collects its EOF
	// (without it the connection is closed rather than reused).
	var extra [1]byte
	r.Read(extra[:])
	return b, nil
}
