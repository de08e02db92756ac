package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// upstreamError is a provider's failure to get a usable answer from its
// upstream (a guard model, a webhook, a Presidio analyzer). Its message
// names the provider and what went wrong, never the checked text nor a
// secret; it matches errUnavailable and, when the cause was one, the
// context's deadline or cancellation, with errors.Is.
type upstreamError struct {
	msg    string
	ctxErr error // context.DeadlineExceeded, context.Canceled or nil
}

func (e *upstreamError) Error() string { return e.msg }

func (e *upstreamError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{errUnavailable, e.ctxErr}
	}
	return []error{errUnavailable}
}

// upstreamErr builds an upstreamError. cause may be nil; when present its
// text is included only if it echoes none of texts (a serve's or a hook's
// error may quote the request it refused).
func upstreamErr(what string, cause error, texts []string, format string, args ...any) error {
	msg := what + ": " + fmt.Sprintf(format, args...)
	e := &upstreamError{}
	switch {
	case cause == nil:
	case errors.Is(cause, context.DeadlineExceeded):
		e.ctxErr = context.DeadlineExceeded
	case errors.Is(cause, context.Canceled):
		e.ctxErr = context.Canceled
		msg += ": canceled"
	default:
		c := cause.Error()
		// A *url.Error's text quotes the URL, whose query may hold a
		// hook's token: keep only the operation and the transport's reason.
		var ue *url.Error
		if errors.As(cause, &ue) {
			c = ue.Op + ": " + ue.Err.Error()
		}
		if !echoes(c, texts) {
			msg += ": " + c
		}
	}
	e.msg = msg
	return e
}

// holdsAny reports whether s contains any of texts that is long enough
// to be telling (a one-letter text is in every message).
func holdsAny(s string, texts []string) bool {
	for _, t := range texts {
		if len(t) >= 4 && strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// echoWindow is the shortest run of bytes taken as a quote of a text.
const echoWindow = 12

// echoes reports whether msg may quote any of texts: msg is long (error
// texts that matter are short), or some echoWindow bytes of msg occur in
// a text. A cause that merely looks like a quote is dropped too, which
// costs detail, never a leak of a prompt's fragment.
func echoes(msg string, texts []string) bool {
	if len(msg) > 512 {
		return true
	}
	if holdsAny(msg, texts) {
		return true
	}
	for i := 0; i+echoWindow <= len(msg); i++ {
		w := msg[i : i+echoWindow]
		for _, t := range texts {
			if strings.Contains(t, w) {
				return true
			}
		}
	}
	return false
}

// postJSON POSTs body to url within timeout and returns the 2xx answer's
// body (at most limit bytes). Errors say what failed (status code,
// timeout, oversize), never the answer's body, which may echo the texts.
func postJSON(ctx context.Context, client *http.Client, what, url string, body []byte, header http.Header, timeout time.Duration, limit int64, texts []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, upstreamErr(what, nil, texts, "building request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, upstreamErr(what, context.DeadlineExceeded, texts, "no answer within %s", timeout)
		}
		// The transport's reason (upstreamErr drops the URL); never the body.
		return nil, upstreamErr(what, err, texts, "request failed")
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, upstreamErr(what, nil, texts, "answered status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, upstreamErr(what, context.DeadlineExceeded, texts, "no complete answer within %s", timeout)
		}
		return nil, upstreamErr(what, err, texts, "reading answer")
	}
	if int64(len(data)) > limit {
		return nil, upstreamErr(what, nil, texts, "answer larger than %d bytes", limit)
	}
	return data, nil
}

// noRedirects keeps a bearer secret and the checked text going only to
// the configured URL: a guard upstream that redirects is misconfigured.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func newUpstreamClient() *http.Client {
	return &http.Client{CheckRedirect: noRedirects}
}
