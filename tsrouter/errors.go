package tsrouter

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends"
)

// envelope is the wire shape of an error body: each caller dialect has its
// own, and the SDKs only raise their typed errors for the right one.
type envelope int

const (
	// envGeneric / envOpenAI: {"error":{"type":T,"message":M}}.
	envGeneric envelope = iota
	envOpenAI
	// envResponses adds "code":null (OpenAI Responses).
	envResponses
	// envAnthropic: {"type":"error","error":{"type":T,"message":M}}.
	envAnthropic
)

// apiError is every error the router answers with. All statuses are decided
// in this file: handlers return apiErrors, never write statuses themselves.
type apiError struct {
	Status  int
	Type    string
	Message string
	// RetryAfter, if set, is sent as the Retry-After header (seconds).
	RetryAfter string
	// Permanent marks a refusal no retry can change although its status
	// is one the SDKs retry (5xx): it is sent as X-Should-Retry: false,
	// which the openai and Anthropic SDKs honour.
	Permanent bool
	// Close asks the server to close the connection after the response
	// (framing errors, where the rest of the stream cannot be trusted).
	Close bool
}

func (e *apiError) Error() string { return e.Message }

// Errors the router raises on its own account.
var (
	errUnauthorized = &apiError{Status: http.StatusUnauthorized, Type: "authentication_error", Message: "invalid or missing API key"}
	errForbidden    = &apiError{Status: http.StatusForbidden, Type: "permission_error", Message: "this tailnet node or user is not permitted to use the router"}
	errBusy         = &apiError{Status: http.StatusServiceUnavailable, Type: "server_busy", Message: "server busy; try again later", Close: true}
	errTooLarge     = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "request body too large", Close: true}
	errOverContext  = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "request exceeds the context window of every available tier; send a smaller request"}
	errModelUnknown = &apiError{Status: http.StatusNotFound, Type: "model_not_found", Message: "unknown configured model"}
)

// Audio gateway errors (contract §2.6). Framing refusals close the
// connection: the rest of the stream cannot be trusted or was not read.
var (
	errAudioLength         = &apiError{Status: http.StatusLengthRequired, Type: "invalid_request", Message: "audio requests need a Content-Length; chunked request bodies are not supported", Close: true}
	errAudioBodyTooLarge   = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "audio request body too large", Close: true}
	errAudioInputTooLarge  = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "audio_b64 decodes to more than audio_max_input_bytes"}
	errAudioTextTooLong    = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "input is longer than audio_max_text_chars characters"}
	errAudioOutputTooLarge = &apiError{Status: http.StatusRequestEntityTooLarge, Type: "payload_too_large", Message: "synthesized audio exceeds audio_max_output_bytes"}
	errAudioRouteNotFound  = &apiError{Status: http.StatusNotFound, Type: "route_not_found", Message: "unknown audio route for this endpoint"}
	errAudioRouteForbidden = &apiError{Status: http.StatusForbidden, Type: "permission_error", Message: "this audio route is not permitted for this caller"}
	errAudioNotFinal       = &apiError{Status: http.StatusUnprocessableEntity, Type: "unsupported_audio_mode", Message: "only final transcription is supported; send is_final: true"}
	errAudioBusy           = &apiError{Status: http.StatusServiceUnavailable, Type: "server_busy", Message: "audio gateway busy; try again later"}
	errAudioUpstream       = &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "audio upstream failed"}
	errAudioTimeout        = &apiError{Status: http.StatusGatewayTimeout, Type: "upstream_timeout", Message: "audio upstream timed out"}
	errAudioInternal       = &apiError{Status: http.StatusInternalServerError, Type: "internal_error", Message: "internal audio gateway error"}
)

// errRateLimited is 429 with the seconds until the caller's bucket has a
// request again.
func errRateLimited(retryAfter int) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_exceeded", Message: "rate limit exceeded; retry after " + strconv.Itoa(retryAfter) + "s", RetryAfter: strconv.Itoa(retryAfter)}
}

// errModelForbidden names the model the caller's grant does not cover.
func errModelForbidden(model string) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: "permission_error", Message: "model " + strconv.Quote(model) + " is not permitted for this caller"}
}

func errNoRoute(path string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: "not_found", Message: "no route " + path}
}

func errBadRequest(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: msg}
}

// errUnsupported refuses a request feature the router does not offer
// (the Responses allow-list, contract §2.4); msg names the fields.
func errUnsupported(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "unsupported_feature", Message: msg}
}

func errMethod(allow string) *apiError {
	return &apiError{Status: http.StatusMethodNotAllowed, Type: "method_not_allowed", Message: "method not allowed; use " + allow}
}

// errExhausted is the failover signal: the routed serve cannot take the
// request now. Status is the configured exhaustion_status.
func errExhausted(status int, retryAfter string) *apiError {
	return &apiError{Status: status, Type: "service_unavailable", Message: "the configured model service is unavailable", RetryAfter: retryAfter}
}

// fromUpstream maps a classified upstream failure to the caller's status.
func fromUpstream(err error, exhaustionStatus int) *apiError {
	var be *backends.Error
	if !errors.As(err, &be) {
		return &apiError{Status: http.StatusInternalServerError, Type: "internal_error", Message: "internal error"}
	}
	switch be.Kind {
	case backends.Unavailable:
		return errExhausted(exhaustionStatus, be.RetryAfter)
	case backends.Rejected:
		t := "invalid_request_error"
		if be.Status == http.StatusRequestEntityTooLarge {
			t = "payload_too_large"
		}
		return &apiError{Status: be.Status, Type: t, Message: be.Message}
	default:
		return &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: be.Message}
	}
}

// writeError answers e in the caller's envelope.
func writeError(w http.ResponseWriter, env envelope, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter != "" {
		h.Set("Retry-After", e.RetryAfter)
	}
	if e.Permanent {
		h.Set("X-Should-Retry", "false")
	}
	if e.Close {
		h.Set("Connection", "close")
	}
	body := errorBody(env, e.Type, e.Message)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	w.Write(body)
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
		v = struct {
			Error inner `json:"error"`
		}{inner{Type: typ, Message: msg}}
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
