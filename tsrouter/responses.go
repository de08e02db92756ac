package tsrouter

import (
	"errors"
	"net/http"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// responses serves POST /v1/responses, the stateless subset of the OpenAI
// Responses API that Codex-style clients speak (contract §2.4). The request
// is translated to OpenAI Chat — strictly: anything the router cannot
// honour is refused by name — and relayed with the same gates as chat; the
// reply, streamed event by event, comes back as Responses events. Errors
// use the Responses envelope ({"error":{type,message,code:null}}).
func (h *Handler) responses(w *recorder, r *http.Request, rec *record) {
	h.metrics.InFlight(1)
	defer h.metrics.InFlight(-1)
	defer h.recordChat(w, rec)
	body, aerr := h.readBody(r)
	if aerr != nil {
		writeError(w, envResponses, aerr)
		return
	}
	out, info, err := dialect.ResponsesToOpenAI(body)
	if aerr := responsesRequestError(err); aerr != nil {
		writeError(w, envResponses, aerr)
		return
	}
	tier, ok := h.routeAlias(w, rec, backends.NormalizeAlias(info.Model), envResponses)
	if !ok {
		return
	}
	rec.requestBytes = len(body)
	rec.promptTokens = info.InputTokens
	req, err := jsonobj.Parse(out)
	if err != nil {
		writeError(w, envResponses, errBadRequest("bad request body"))
		return
	}
	lease, upBody, served, ok := h.admitToTier(w, r, rec, tier, req, envResponses, info.ToolStructure)
	if !ok {
		return
	}
	defer lease.Release()
	if info.Stream {
		h.translatedStream(w, r, tier, upBody, dialect.NewResponsesStream(info), envResponses, rec, served)
		return
	}
	reply, ok := h.complete(w, r, tier, upBody, rec, envResponses)
	if !ok {
		return
	}
	resp, err := dialect.OpenAIResponseToResponses(reply.Body, info)
	if err != nil {
		h.upstreamFailed(w, envResponses, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply could not be translated"}, rec)
		return
	}
	if p, c := backends.ReplyUsage(reply.Body); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
	}
	rec.decide(served, "served")
	setOverhead(w.Header(), rec)
	writeJSON(w, http.StatusOK, resp)
}

// responsesRequestError maps a translation failure: a feature the router
// does not offer is 400 unsupported_feature naming the fields, a malformed
// request 400 invalid_request_error.
func responsesRequestError(err error) *apiError {
	if err == nil {
		return nil
	}
	var ue *dialect.UnsupportedError
	if errors.As(err, &ue) {
		return errUnsupported(ue.Error())
	}
	var re *dialect.RequestError
	if errors.As(err, &re) {
		return errBadRequest(re.Message)
	}
	return errBadRequest("bad request body")
}
