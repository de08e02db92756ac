package tsrouter

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// messages serves POST /v1/messages (Anthropic Messages). On an
// OpenAI-dialect tier the request is translated to OpenAI Chat, relayed
// with the same gates as chat, and the reply — streamed event by event —
// translated back; an Anthropic tier gets it as sent (messagesNative).
// Errors use the Anthropic envelope, so the SDK raises its classes.
func (h *Handler) messages(w *recorder, r *http.Request, rec *record) {
	h.metrics.InFlight(1)
	defer h.metrics.InFlight(-1)
	defer h.recordChat(w, rec)
	body, aerr := h.readBody(r)
	if aerr != nil {
		writeError(w, envAnthropic, aerr)
		return
	}
	out, info, err := dialect.AnthropicToOpenAI(body, dialect.ToOpenAIOptions{})
	var re *dialect.RequestError
	if errors.As(err, &re) {
		writeError(w, envAnthropic, errBadRequest(re.Message))
		return
	} else if err != nil {
		writeError(w, envAnthropic, errBadRequest("bad request body"))
		return
	}
	tier, ok := h.routeAlias(w, rec, backends.NormalizeAlias(info.Model), envAnthropic)
	if !ok {
		return
	}
	rec.requestBytes = len(body)
	rec.promptTokens = info.InputTokens
	req, err := jsonobj.Parse(out)
	if err != nil {
		writeError(w, envAnthropic, errBadRequest("bad request body"))
		return
	}
	if tier.Dialect == "anthropic" {
		h.messagesNative(w, r, rec, tier, body, req, info)
		return
	}
	lease, upBody, served, ok := h.admitToTier(w, r, rec, tier, req, envAnthropic, info.ToolStructure)
	if !ok {
		return
	}
	defer lease.Release()
	if info.Stream {
		h.translatedStream(w, r, tier, upBody, dialect.NewAnthropicStream(info.Model, info), envAnthropic, rec, served)
		return
	}
	reply, ok := h.complete(w, r, tier, upBody, rec, envAnthropic)
	if !ok {
		return
	}
	msg, err := dialect.OpenAIResponseToAnthropic(reply.Body, info.Model)
	if err != nil {
		h.upstreamFailed(w, envAnthropic, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply could not be translated"}, rec)
		return
	}
	if p, c := backends.ReplyUsage(reply.Body); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
	}
	rec.decide(served, "served")
	setOverhead(w.Header(), rec)
	writeJSON(w, http.StatusOK, msg)
}

// countTokens serves POST /v1/messages/count_tokens: an estimate (the
// serve has no such endpoint), documented as one.
func (h *Handler) countTokens(w http.ResponseWriter, r *http.Request, rec *record) {
	body, aerr := h.readBody(r)
	if aerr != nil {
		writeError(w, envAnthropic, aerr)
		return
	}
	n, err := dialect.CountTokens(body)
	if err != nil {
		writeError(w, envAnthropic, errBadRequest(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"input_tokens":`+strconv.Itoa(n)+"}\n"))
}
