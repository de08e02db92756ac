package tsrouter

import (
	"errors"
	"net/http"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// Anthropic-dialect tiers. Inside the router requests travel as OpenAI
// Chat: complete and openStream translate for an Anthropic tier on the way
// out (dialect.OpenAIToAnthropic, then the operator's extra_body in the
// serve's terms) and back (AnthropicResponseToOpenAI, or a stream whose
// Next yields OpenAI chunks), so chat, messages and responses handlers
// consume an Anthropic serve like any other. Only an Anthropic caller on
// an Anthropic tier skips translation: messagesNative relays its body and
// the serve's events as they are, like chat does for OpenAI.

// toAnthropic translates a prepared OpenAI Chat body for an Anthropic tier
// and applies the tier's extra_body_defaults and extra_body to the result.
func (h *Handler) toAnthropic(w http.ResponseWriter, tier *backends.Tier, body []byte, rec *record, env envelope) ([]byte, dialect.RequestInfo, bool) {
	out, info, err := dialect.OpenAIToAnthropic(body, dialect.ToAnthropicOptions{})
	if err != nil {
		msg := "bad request body"
		var re *dialect.RequestError
		if errors.As(err, &re) {
			msg = re.Message
		}
		rec.detail = "request could not be translated for the serve's dialect"
		writeError(w, env, errBadRequest(msg))
		return nil, info, false
	}
	return tier.ApplyExtraBody(out), info, true
}

// completeTranslated is complete for an Anthropic tier.
func (h *Handler) completeTranslated(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Reply, bool) {
	abody, info, ok := h.toAnthropic(w, tier, body, rec, env)
	if !ok {
		return nil, false
	}
	reply, ok := h.completeNative(w, r, tier, abody, rec, env)
	if !ok {
		return nil, false
	}
	out, err := dialect.AnthropicResponseToOpenAI(reply.Body, info.Model)
	if err != nil {
		h.upstreamFailed(w, env, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply could not be translated"}, rec)
		return nil, false
	}
	return &backends.Reply{Body: out, ContentType: "application/json"}, true
}

// openStreamTranslated is openStream for an Anthropic tier: the same first
// event gate, then the serve's events come out as OpenAI chunks.
func (h *Handler) openStreamTranslated(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Stream, bool) {
	abody, info, ok := h.toAnthropic(w, tier, body, rec, env)
	if !ok {
		return nil, false
	}
	s, ok := h.openStreamNative(w, r, tier, abody, rec, env)
	if !ok {
		return nil, false
	}
	s.TranslateToOpenAI(dialect.NewOpenAIStream(info.Model, info))
	return s, true
}

// messagesNative serves /v1/messages on an Anthropic tier: the caller's
// body is relayed with only model, max_tokens (capped, with the clamp
// headers) and the operator's overrides edited; the reply and every
// streamed event go back as the serve sent them, except that the model
// is the caller's string. openai is the request as OpenAI Chat, which the
// gates read.
func (h *Handler) messagesNative(w http.ResponseWriter, r *http.Request, rec *record, tier *backends.Tier, body []byte, openai *jsonobj.Object, info dialect.RequestInfo) {
	req, aerr := parseObject(body)
	if aerr != nil {
		writeError(w, envAnthropic, aerr)
		return
	}
	modelJSON := req.Get("model")
	if len(modelJSON) == 0 || modelJSON[0] != '"' {
		modelJSON = jsonobj.String(info.Model)
	}
	lease, ok := h.admitGates(w, r, rec, tier, openai, envAnthropic, info.ToolStructure)
	if !ok {
		return
	}
	defer lease.Release()
	upBody, clamp := tier.PrepareAnthropic(req)
	served := noteClamp(w, clamp)
	if info.Stream {
		s, ok := h.openStreamNative(w, r, tier, upBody, rec, envAnthropic)
		if !ok {
			return
		}
		defer h.closeStream(s, rec)
		f := flusher{w}
		st, err := backends.RelayAnthropic(w, f, s, modelJSON)
		// message_stop was relayed: nothing follows a clean end.
		h.endRelay(w, f, st, err, rec, served, envAnthropic, nil)
		return
	}
	reply, ok := h.completeNative(w, r, tier, upBody, rec, envAnthropic)
	if !ok {
		return
	}
	if p, c := backends.AnthropicReplyUsage(reply.Body); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
	}
	rec.decide(served, "served")
	setOverhead(w.Header(), rec)
	writeJSON(w, http.StatusOK, backends.RewriteModel(reply.Body, modelJSON))
}
