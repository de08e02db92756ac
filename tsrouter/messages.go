package tsrouter

import (
	"errors"
	"io"
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
		h.messagesStream(w, r, tier, upBody, info, rec, served)
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

// messagesStream relays an OpenAI stream as Anthropic events. As for chat,
// 200 is committed only after the serve's first event.
func (h *Handler) messagesStream(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, info dialect.RequestInfo, rec *record, served string) {
	s, ok := h.openStream(w, r, tier, body, rec, envAnthropic)
	if !ok {
		return
	}
	defer h.closeStream(s, rec)
	f := flusher{w}
	tr := dialect.NewAnthropicStream(info.Model, info)
	if _, err := w.Write(tr.Start()); err != nil {
		rec.decide("client_disconnected", "error")
		return
	}
	for {
		_, data, err := s.Next()
		if err == io.EOF {
			w.Write(tr.Finish())
			f.Flush()
			rec.decide(served, "served")
			return
		}
		if err == nil {
			var out []byte
			out, err = tr.Chunk(data)
			rec.events++
			if err == nil {
				if _, werr := w.Write(out); werr != nil {
					rec.decide("client_disconnected", "error")
					return
				}
				if !s.Buffered() {
					f.Flush()
				}
				continue
			}
		}
		if errors.Is(err, backends.ErrClientGone) {
			rec.decide("client_disconnected", "error")
			return
		}
		w.Write(tr.ErrorEvent())
		f.Flush()
		rec.decide("backend_error_interrupted", "error")
		rec.detail = "stream interrupted: " + err.Error()
		return
	}
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
