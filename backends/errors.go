package backends

import (
	"errors"
	"strconv"
	"strings"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// Kind says what an upstream failure means for the caller. The front door
// maps each kind to exactly one status (tsrouter's error table).
type Kind int

const (
	// Unavailable: the serve cannot take the request now (refused,
	// unreachable, timed out before answering, 503/429, queue full in-band).
	// Answered with the tier set's exhaustion status, nothing streamed: it
	// is the client's failover signal.
	Unavailable Kind = iota + 1
	// Rejected: the serve refused the request itself (400/413/415/422). The
	// status passes through; the caller must not retry elsewhere.
	Rejected
	// Failed: any other upstream failure before the response was committed.
	Failed
	// Interrupted: the stream broke after the router committed its 200.
	Interrupted
)

// Error is an upstream failure, classified. Message is safe to show the
// caller (no hosts, tier ids, exception text or secrets); Detail is for the
// operator's log and is equally free of secrets.
type Error struct {
	Kind Kind
	// Status is the upstream HTTP status, if one was received.
	Status int
	// Message is caller-safe.
	Message string
	// Detail is a short log-only explanation.
	Detail string
	// RetryAfter is the serve's Retry-After value, if any and well-formed.
	RetryAfter string
	// Reason is a fixed token for the decision log when the router itself
	// refused (quiesced, unavailable, queue_full, queue_timeout).
	Reason string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	return e.Message
}

// ErrClientGone reports that the caller disconnected; nothing more can be
// sent to it and the upstream request has been cancelled.
var ErrClientGone = errors.New("client disconnected")

const (
	msgUnavailable = "the configured model service is unavailable"
	msgRejected    = "model upstream rejected the request"
	msgTooLarge    = "model upstream rejected the request as too large"
	msgFailed      = "model upstream failed"
	msgInterrupted = "stream interrupted"
)

func unavailable(detail string) *Error {
	return &Error{Kind: Unavailable, Message: msgUnavailable, Detail: detail}
}

func failed(detail string) *Error {
	return &Error{Kind: Failed, Message: msgFailed, Detail: detail}
}

func interrupted(detail string) *Error {
	return &Error{Kind: Interrupted, Message: msgInterrupted, Detail: detail}
}

// classifyStatus turns a non-2xx upstream status and its (bounded) body into
// an Error.
func classifyStatus(status int, body []byte, retryAfter string) *Error {
	e := &Error{Status: status, Detail: "upstream status " + strconv.Itoa(status)}
	switch status {
	case 429, 503, 529:
		// 529 is Anthropic's "overloaded": the same signal as vLLM's 503.
		e.Kind, e.Message = Unavailable, msgUnavailable
		e.RetryAfter = cleanRetryAfter(retryAfter)
	case 404:
		// The serve does not (yet) serve the configured model: typically a
		// serve mid-swap during promotion. The client should go elsewhere.
		e.Kind, e.Message = Unavailable, msgUnavailable
	case 400, 415, 422:
		e.Kind, e.Message = Rejected, upstreamMessage(body, msgRejected)
	case 413:
		e.Kind, e.Message = Rejected, upstreamMessage(body, msgTooLarge)
	default:
		e.Kind, e.Message = Failed, msgFailed
	}
	return e
}

// classifyInband reads a serve's in-stream error object (vLLM
// {"error":{...}}, SGLang {"object":"error",...} or {"error":{"code":503}})
// as if it had been the HTTP status.
func classifyInband(data []byte) *Error {
	code := 0
	inner := data
	if s, e, ok := jsonobj.Find(data, "error"); ok && data[s] == '{' {
		inner = data[s:e]
	}
	if s, e, ok := jsonobj.Find(inner, "code"); ok {
		code, _ = strconv.Atoi(strings.Trim(string(inner[s:e]), `"`))
	}
	if code < 400 || code > 599 {
		code = 500
	}
	err := classifyStatus(code, data, "")
	err.Detail = "in-band error event, code " + strconv.Itoa(code)
	return err
}

func cleanRetryAfter(v string) string {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < 86400 {
		return v
	}
	return ""
}
