package tsrouter

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// This file is the one place that decides what a failure looks like on the
// wire. Handlers return errors; Handler.fail (the only caller of
// writeError) maps each to a status, an error.type, a message and retry
// hints in the route's envelope. Every (status, type) pair the router can
// answer with is declared below with declare, and README.md's "Statuses"
// table lists exactly the declared pairs (TestStatusesMatchREADME). No
// other file builds an apiError (TestAPIErrorsBuiltOnlyHere).

// envelope is the wire shape of an error body: each caller dialect has its
// own, and the SDKs only raise their typed errors for the right one.
type envelope int

const (
	// envUnset is no envelope: a route must name its own (a test checks),
	// and an error in it is written like envGeneric.
	envUnset envelope = iota
	// envGeneric / envOpenAI: {"error":{"type":T,"message":M}}.
	envGeneric
	envOpenAI
	// envResponses adds "code":null (OpenAI Responses).
	envResponses
	// envAnthropic: {"type":"error","error":{"type":T,"message":M}}.
	envAnthropic
)

// kind is one (status, error.type) pair the router answers with.
type kind struct {
	Status int
	Type   string
}

// kinds is every declared pair, in declaration order.
var kinds []kind

func declare(status int, typ string) kind {
	k := kind{status, typ}
	kinds = append(kinds, k)
	return k
}

// The declared statuses. Two spellings of "bad request" exist on purpose:
// invalid_request_error on the inference paths (what the OpenAI SDKs and
// the Python router send there) and invalid_request on the read-only GET
// views and the audio framing checks, whose clients match on the Python
// router's token.
var (
	kindBadRequest      = declare(http.StatusBadRequest, "invalid_request_error")
	kindBadQuery        = declare(http.StatusBadRequest, "invalid_request")
	kindUnsupported     = declare(http.StatusBadRequest, "unsupported_feature")
	kindBadTransition   = declare(http.StatusBadRequest, "invalid_transition")
	kindUnauthorized    = declare(http.StatusUnauthorized, "authentication_error")
	kindForbidden       = declare(http.StatusForbidden, "permission_error")
	kindNotFound        = declare(http.StatusNotFound, "not_found")
	kindModelNotFound   = declare(http.StatusNotFound, "model_not_found")
	kindRouteNotFound   = declare(http.StatusNotFound, "route_not_found")
	kindMethod          = declare(http.StatusMethodNotAllowed, "method_not_allowed")
	kindSlowBody        = declare(http.StatusRequestTimeout, "request_timeout")
	kindConflict        = declare(http.StatusConflict, "conflict")
	kindLengthRequired  = declare(http.StatusLengthRequired, "invalid_request")
	kindTooLarge        = declare(http.StatusRequestEntityTooLarge, "payload_too_large")
	kindServeMediaType  = declare(http.StatusUnsupportedMediaType, "invalid_request_error")
	kindServeUnprocess  = declare(http.StatusUnprocessableEntity, "invalid_request_error")
	kindAudioMode       = declare(http.StatusUnprocessableEntity, "unsupported_audio_mode")
	kindRateLimited     = declare(http.StatusTooManyRequests, "rate_limit_exceeded")
	kindCallerBusy      = declare(http.StatusTooManyRequests, "concurrency_limit_exceeded")
	kindBudgetExceeded  = declare(http.StatusTooManyRequests, "budget_exceeded")
	kindInternal        = declare(http.StatusInternalServerError, "internal_error")
	kindUpstream        = declare(http.StatusBadGateway, "upstream_error")
	kindBusy            = declare(http.StatusServiceUnavailable, "server_busy")
	kindExhausted       = declare(http.StatusServiceUnavailable, "service_unavailable") // status: [router].exhaustion_status
	kindTransitionFail  = declare(http.StatusServiceUnavailable, "transition_failed")
	kindUpstreamTimeout = declare(http.StatusGatewayTimeout, "upstream_timeout")
	// A guardrail blocked the request: the same request is blocked again,
	// so no retry (X-Should-Retry: false, as for every 4xx).
	kindGuardBlocked = declare(http.StatusBadRequest, "guardrail_blocked")
	// A guardrail provider under on_error = fail_closed failed (timeout,
	// refused connection, malformed answer): the text was never judged, so
	// the truth is "not now", not "never" — retryable, with Retry-After.
	kindGuardUnavailable = declare(http.StatusServiceUnavailable, "guardrail_unavailable")
)

// apiError is a failure as the caller sees it.
type apiError struct {
	kind
	Message string
	// RetryAfter, if set, is sent as the Retry-After header (seconds).
	RetryAfter string
	// Permanent marks an answer no retry of this router can change whose
	// status alone would invite one: a 5xx (tools on a tier without them;
	// the exhaustion status, which tells the caller to go to its own
	// provider now) or a 429 (a day budget spent until midnight). 4xx
	// other than 408 and 429 are permanent by status. Sent as X-Should-Retry: false, which the
	// openai and Anthropic SDKs honour.
	Permanent bool
	// Close asks the server to close the connection after the response
	// (framing errors, where the rest of the stream cannot be trusted).
	Close bool
	// Allow is the Allow header of a 405.
	Allow string
	// detail is the operator's explanation for the audit line; never sent.
	detail string
}

func (e *apiError) Error() string { return e.Message }

// withDetail returns a copy of e that tells the operator why (the shared
// error values are never modified).
func (e *apiError) withDetail(detail string) *apiError {
	c := *e
	c.detail = detail
	return &c
}

func newError(k kind, msg string) *apiError { return &apiError{kind: k, Message: msg} }

// Errors the router raises on its own account.
var (
	// errCrossSite and errCSRF refuse a browser's state-changing request
	// that did not come from the router's own pages (webui.go).
	errCrossSite      = newError(kindForbidden, "cross-site request refused")
	errCSRF           = newError(kindForbidden, "missing or wrong CSRF token: reload the page")
	errUnauthorized   = newError(kindUnauthorized, "invalid or missing API key")
	errForbidden      = newError(kindForbidden, "this tailnet node or user is not permitted to use the router")
	errKeyForbidden   = newError(kindForbidden, "this API key is not permitted to use this endpoint")
	errAdminForbidden = newError(kindForbidden, "admin permission required")
	errBusy           = &apiError{kind: kindBusy, Message: "server busy; try again later", Close: true}
	errMgmtBusy       = newError(kindBusy, "management busy; try again later")
	errCallerBusy     = &apiError{kind: kindCallerBusy, Message: "too many requests of this caller in flight; retry when one ends", RetryAfter: "1"}
	errMutationBusy   = newError(kindBusy, "transition mutation busy")
	errTransitionFail = newError(kindTransitionFail, "transition failed")
	errTooLarge       = &apiError{kind: kindTooLarge, Message: "request body too large", Close: true}
	errUnreadableBody = &apiError{kind: kindBadRequest, Message: "could not read request body", Close: true}
	errSlowBody       = &apiError{kind: kindSlowBody, Message: "request body too slow: send it faster", Close: true}
	errOverContext    = newError(kindTooLarge, "request exceeds the context window of every available tier; send a smaller request")
	errModelUnknown   = newError(kindModelNotFound, "unknown configured model")
	errKeyNotFound    = newError(kindNotFound, "api key not found")
	errInternal       = newError(kindInternal, "internal error")
	errUpstreamFailed = newError(kindUpstream, "model upstream failed")
)

// Audio gateway errors. Framing refusals close the connection: the rest of
// the stream cannot be trusted or was not read.
var (
	errAudioLength         = &apiError{kind: kindLengthRequired, Message: "audio requests need a Content-Length; chunked request bodies are not supported", Close: true}
	errAudioBodyTooLarge   = &apiError{kind: kindTooLarge, Message: "audio request body too large", Close: true}
	errAudioInputTooLarge  = newError(kindTooLarge, "audio_b64 decodes to more than audio_max_input_bytes")
	errAudioTextTooLong    = newError(kindTooLarge, "input is longer than audio_max_text_chars characters")
	errAudioOutputTooLarge = newError(kindTooLarge, "synthesized audio exceeds audio_max_output_bytes")
	errAudioRouteNotFound  = newError(kindRouteNotFound, "unknown audio route for this endpoint")
	errAudioRouteForbidden = newError(kindForbidden, "this audio route is not permitted for this caller")
	errAudioNotFinal       = newError(kindAudioMode, "only final transcription is supported; send is_final: true")
	errAudioBusy           = newError(kindBusy, "audio gateway busy; try again later")
	errAudioUpstream       = newError(kindUpstream, "audio upstream failed")
	errAudioTimeout        = newError(kindUpstreamTimeout, "audio upstream timed out")
	errAudioInternal       = newError(kindInternal, "internal audio gateway error")
)

// errRateLimited is 429 with the seconds until the caller's bucket has a
// request again.
func errRateLimited(retryAfter int) *apiError {
	s := strconv.Itoa(retryAfter)
	return &apiError{kind: kindRateLimited, Message: "rate limit exceeded; retry after " + s + "s", RetryAfter: s}
}

// errBudgetExceeded is 429 for a caller past its day budget: no retry
// helps before the next UTC day, which Retry-After names.
func errBudgetExceeded(name string, retryAfter int) *apiError {
	s := strconv.Itoa(retryAfter)
	return &apiError{kind: kindBudgetExceeded, Message: "daily budget " + strconv.Quote(name) + " exceeded; it resets in " + s + "s",
		RetryAfter: s, Permanent: true}
}

// errModelForbidden names the model the caller's grant does not cover.
func errModelForbidden(model string) *apiError {
	return newError(kindForbidden, "model "+strconv.Quote(model)+" is not permitted for this caller")
}

// errNoCompletions refuses a text completion for an alias whose tier
// speaks Anthropic Messages, which has no text completions endpoint.
func errNoCompletions(model string) *apiError {
	return newError(kindBadRequest, "model "+strconv.Quote(model)+
		" is served by an Anthropic-dialect tier, which has no text completions endpoint; use /v1/chat/completions or /v1/messages for it")
}

// errGuardBlocked refuses a request a guardrail blocked, naming the
// provider and the category (and a webhook's message), never the text.
func errGuardBlocked(provider, category, message string) *apiError {
	return newError(kindGuardBlocked, guardBlockedMessage(provider, category, message))
}

// guardUnavailableRetryAfter is the Retry-After of a guardrail_unavailable
// answer: long enough for a restarting guard model or webhook to come back,
// short enough that a caller which waits loses little.
const guardUnavailableRetryAfter = "5"

func errGuardUnavailable(provider string) *apiError {
	return &apiError{kind: kindGuardUnavailable, Message: guardUnavailableMessage(provider), RetryAfter: guardUnavailableRetryAfter}
}

func guardUnavailableMessage(provider string) string {
	return "guardrail " + strconv.Quote(provider) + " is unavailable and fails closed; retry later"
}

// errUnknownGuardrail refuses a caller whose grant or key adds a
// guardrail provider the router does not configure: fail closed rather
// than serve it without the protection it was given.
func errUnknownGuardrail(name string) *apiError {
	return newError(kindForbidden, "this caller's grant or key names guardrail "+strconv.Quote(name)+", which this router does not configure")
}

func guardBlockedMessage(provider, category, message string) string {
	msg := "blocked by guardrail " + strconv.Quote(provider) + " (category " + strconv.Quote(category) + ")"
	if message != "" {
		msg += ": " + message
	}
	return msg
}

// errNoRoute never echoes the path: a caller may have put a secret in it.
var errNoRoute = newError(kindNotFound, "no such endpoint")

func errBadRequest(msg string) *apiError { return newError(kindBadRequest, msg) }

// errBadQuery refuses a malformed query of a read-only view.
func errBadQuery(msg string) *apiError { return newError(kindBadQuery, msg) }

// errUnsupported refuses a request feature the router does not offer (the
// Responses allow-list); msg names the fields.
func errUnsupported(msg string) *apiError { return newError(kindUnsupported, msg) }

func errTransition(msg string) *apiError { return newError(kindBadTransition, msg) }

func errConflict(msg string) *apiError { return newError(kindConflict, msg) }

func errNotFound(msg string) *apiError { return newError(kindNotFound, msg) }

// errUnknownPurposeModel lists the configured models of the kind, so a
// caller can correct the request.
func errUnknownPurposeModel(msg string) *apiError { return newError(kindModelNotFound, msg) }

func errMethod(allow string) *apiError {
	return &apiError{kind: kindMethod, Message: "method not allowed; use " + allow, Allow: allow}
}

// errExhausted is the failover signal: the routed serve cannot take the
// request now, so the caller should use its own provider now rather than
// retry here (advise and defer). Status is the configured
// exhaustion_status; retryAfter is the serve's Retry-After, if it sent
// one, else fail adds [router].exhaustion_retry_after.
func errExhausted(status int, retryAfter string) *apiError {
	k := kindExhausted
	k.Status = status
	return &apiError{kind: k, Message: "the configured model service is unavailable", RetryAfter: retryAfter, Permanent: true}
}

// errToolsUnsupported answers tools on a tier without tool support with
// the exhaustion status, so a failover client goes elsewhere.
func errToolsUnsupported(status int) *apiError { return errExhausted(status, "") }

// fromUpstream maps a classified upstream failure to the caller's status:
// unavailable → the exhaustion status; the serve's own refusal of the
// input (400, 413, 415, 422) → that status; anything else → 502.
func fromUpstream(err error, exhaustionStatus int) *apiError {
	var be *backends.Error
	if !errors.As(err, &be) {
		return errInternal
	}
	switch be.Kind {
	case backends.Unavailable:
		return errExhausted(exhaustionStatus, be.RetryAfter)
	case backends.Rejected:
		k := kindBadRequest
		switch be.Status {
		case http.StatusRequestEntityTooLarge:
			k = kindTooLarge
		case http.StatusUnsupportedMediaType:
			k = kindServeMediaType
		case http.StatusUnprocessableEntity:
			k = kindServeUnprocess
		}
		return newError(k, be.Message)
	default:
		return newError(kindUpstream, be.Message)
	}
}

// fromQuery maps a telemetry view's refusal of its query.
func fromQuery(qe *telemetry.QueryError) *apiError {
	switch qe.Status {
	case http.StatusNotFound:
		if qe.Type == kindModelNotFound.Type {
			return newError(kindModelNotFound, qe.Message)
		}
		return errNotFound(qe.Message)
	case http.StatusBadRequest:
		return errBadQuery(qe.Message)
	}
	return errInternal
}

// fail answers err in env: the one writer of error bodies. Whatever the
// error, the audit line gets its detail. A client that went away gets
// nothing; a response that was already committed (a stream) cannot change
// status, so only the record notes it.
func (h *Handler) fail(w *recorder, env envelope, err error) {
	rec := &w.rec
	if errors.Is(err, backends.ErrClientGone) {
		if rec.reason == "" {
			rec.decide("client_disconnected", "error")
		}
		if rec.detail == "" {
			rec.detail = "client disconnected before the serve answered"
		}
		if w.status == 0 {
			w.status = 499 // the audit line's "client closed request"; nothing is sent
		}
		return
	}
	var ae *apiError
	var qe *telemetry.QueryError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &qe):
		ae = fromQuery(qe)
	default:
		var be *backends.Error
		if errors.As(err, &be) {
			ae = fromUpstream(err, h.backends.ExhaustionStatus)
		} else {
			ae = errInternal
		}
		if rec.detail == "" {
			rec.detail = err.Error()
		}
	}
	switch {
	case ae.detail != "":
		rec.detail = ae.detail
	case rec.detail == "" && ae.Status < 500:
		// The operator sees why a caller was refused, as the caller did.
		rec.detail = ae.Message
	}
	if ae.Type == kindExhausted.Type && ae.RetryAfter == "" && h.exhaustionRetryAfter != "" {
		c := *ae
		c.RetryAfter = h.exhaustionRetryAfter
		ae = &c
	}
	if w.status != 0 {
		if rec.detail == "" {
			rec.detail = "error after the response started: " + ae.Message
		}
		return
	}
	writeError(w, env, ae)
}

// writeError answers e in the caller's envelope. Only fail calls it.
func writeError(w http.ResponseWriter, env envelope, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter != "" {
		h.Set("Retry-After", e.RetryAfter)
	}
	if e.Permanent || retryCannotHelp(e.Status) {
		h.Set("X-Should-Retry", "false")
	}
	if e.Close {
		h.Set("Connection", "close")
	}
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	body := errorBody(env, e.Type, e.Message)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
}

// retryCannotHelp: a 4xx is the request's fault, so the same request
// fails again — except 408 (a timeout) and 429 (wait, then retry: the
// Retry-After says how long).
func retryCannotHelp(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

func errorBody(env envelope, typ, msg string) []byte {
	type inner struct {
		Type    string  `json:"type"`
		Message string  `json:"message"`
		Code    *string `json:"code,omitempty"`
	}
	var v any
	switch env {
	case envAnthropic:
		v = struct {
			Type  string `json:"type"`
			Error inner  `json:"error"`
		}{"error", inner{Type: typ, Message: msg}}
	case envResponses:
		v = map[string]any{"error": map[string]any{"type": typ, "message": msg, "code": nil}}
	default:
		in := inner{Type: typ, Message: msg}
		if env == envOpenAI && typ == kindBudgetExceeded.Type {
			// OpenAI SDK users match quota errors on error.code.
			in.Code = &typ
		}
		v = struct {
			Error inner `json:"error"`
		}{in}
	}
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// streamErrorFrame is the one terminal frame sent when a stream breaks after
// the 200 was committed: never followed by [DONE], so no client mistakes a
// cut answer for a finished one.
func streamErrorFrame(env envelope) []byte {
	switch env {
	case envAnthropic:
		return []byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"stream interrupted\"}}\n\n")
	case envResponses:
		return []byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"upstream_error\",\"message\":\"stream interrupted\"}}\n\n")
	default:
		return []byte("data: {\"error\":{\"type\":\"upstream_error\",\"message\":\"stream interrupted\"}}\n\n")
	}
}

// guardStreamFrame ends a stream a guardrail blocked mid-answer: the
// caller dialect's error event, never a clean end. A provider that failed
// under fail_closed gives guardrail_unavailable, not guardrail_blocked.
func guardStreamFrame(env envelope, b *guard.BlockError) []byte {
	typ, text := kindGuardBlocked.Type, guardBlockedMessage(b.Provider, b.Category, b.Message)
	if b.Unavailable {
		typ, text = kindGuardUnavailable.Type, guardUnavailableMessage(b.Provider)
	}
	msg, _ := json.Marshal(text)
	inner := `{"type":"` + typ + `","message":` + string(msg) + `}`
	switch env {
	case envAnthropic, envResponses:
		return []byte("event: error\ndata: {\"type\":\"error\",\"error\":" + inner + "}\n\n")
	default:
		return []byte("data: {\"error\":" + inner + "}\n\n")
	}
}
