package tsrouter

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// callerAPI adapts one caller-facing API to the inference pipeline: it
// turns the caller's body into OpenAI Chat, and the serve's Chat reply and
// events back into the caller's dialect (text completions, which no
// dialect translates, keep their own body and reply).
type callerAPI struct {
	// env is the API's error envelope.
	env envelope
	// native is the serve dialect the API passes through to unchanged.
	native string
	// parse fills the inference from q.body: chat, alias, stream, tool
	// structure, the prompt estimate.
	parse func(q *inference) error
	// parseNative prepares a passthrough (nil: parse already did).
	parseNative func(q *inference) error
	// reply turns the serve's whole reply into the caller's, with the
	// serve's token counts (0, 0 if it reported none).
	reply func(q *inference, body []byte) (out []byte, prompt, completion int, _ error)
	// relay is how the serve's stream reaches the caller.
	relay func(q *inference) relay
	// kind is the decision record's kind ("" is chat).
	kind string
	// serve chooses the serve side for a tier, or refuses the tier (nil:
	// serveSideFor, every tier).
	serve func(rec *record, tier *backends.Tier, q *inference) (serveSide, error)
}

// serveSide is how the request reaches tier, chosen once per request,
// before the tier is admitted.
func (a *callerAPI) serveSide(rec *record, tier *backends.Tier, q *inference) (serveSide, error) {
	if a.serve != nil {
		return a.serve(rec, tier, q)
	}
	return serveSideFor(tier, q), nil
}

var sseDone = []byte("data: [DONE]\n\n")

// chatAPI is POST /v1/chat/completions. On an OpenAI-dialect tier the body
// is relayed as sent, with only the fields the router owns edited, and the
// stream byte for byte but for the model; an Anthropic tier's reply comes
// back as OpenAI chunks through the same relay.
var chatAPI = &callerAPI{
	env:    envOpenAI,
	native: "openai",
	parse: func(q *inference) error {
		req, err := q.parseOpenAI()
		if err != nil {
			return err
		}
		q.chat, q.native = req, req
		q.toolStructure = backends.HasToolStructure(req)
		// The Python router's estimate: the size of the messages / 4.
		q.promptTokens = len(req.Get("messages")) / 4
		return nil
	},
	reply: openAIReply,
	relay: openAIRelay,
}

// parseOpenAI reads an OpenAI-dialect body the router relays as sent: its
// model (echoed in replies) and whether it streams.
func (q *inference) parseOpenAI() (*jsonobj.Object, error) {
	req, err := parseObject(q.body)
	if err != nil {
		return nil, err
	}
	if q.modelJSON, q.alias, err = requestModel(req); err != nil {
		return nil, err
	}
	if q.stream, err = requestStream(req); err != nil {
		return nil, err
	}
	return req, nil
}

// openAIReply is an OpenAI-dialect serve's reply relayed as sent but for
// the model, which echoes the caller's.
func openAIReply(q *inference, body []byte) ([]byte, int, int, error) {
	p, c := backends.ReplyUsage(body)
	return backends.RewriteModel(body, q.modelJSON), p, c, nil
}

// openAIRelay relays an OpenAI-dialect serve's stream byte for byte but
// for the model, then [DONE]; a break ends with one error frame instead.
func openAIRelay(q *inference) relay {
	return relay{
		run: func(w io.Writer, f backends.Flusher, s *backends.Stream) (backends.RelayStats, error) {
			if q.gate != nil {
				return gatedOpenAIRelay(w, f, s, q.modelJSON, q.gate, q.usageAdded)
			}
			if q.usageAdded {
				return backends.RelayOpenAIWithoutUsage(w, f, s, q.modelJSON)
			}
			return backends.RelayOpenAI(w, f, s, q.modelJSON)
		},
		done:       sseDone,
		errorEvent: func() []byte { return streamErrorFrame(envOpenAI) },
	}
}

// completionsAPI is POST /v1/completions, the legacy text completions API
// of fill-in-the-middle autocomplete and evaluation harnesses. Only
// OpenAI-dialect tiers serve it (vLLM and SGLang have the endpoint; there
// is no faithful Messages form of a bare prompt with a suffix): the body
// goes to the serve's /v1/completions edited like a chat body (model,
// output cap, operator overrides), and the reply and stream come back as
// the serve sent them but for the model. prompt and suffix are read for
// the size estimate; every other field (echo, logprobs, stop, …) is the
// serve's to judge.
var completionsAPI = &callerAPI{
	env:    envOpenAI,
	native: "openai",
	kind:   "completion",
	parse: func(q *inference) error {
		req, err := q.parseOpenAI()
		if err != nil {
			return err
		}
		prompts, err := completionPrompts(req.Get("prompt"))
		if err != nil {
			return err
		}
		var suffix string
		if v := req.Get("suffix"); v != nil && string(v) != "null" {
			if v[0] != '"' || json.Unmarshal(v, &suffix) != nil {
				return errBadRequest("suffix must be a string")
			}
		}
		q.chat, q.native, q.text = req, req, true
		// Each prompt is filled in before its suffix: both are prompt.
		for _, p := range prompts {
			n := p.tokens + backends.PromptEstimate(p.text, suffix)
			q.promptTokens += n
			q.promptMax = max(q.promptMax, n)
		}
		return nil
	},
	serve: func(rec *record, tier *backends.Tier, _ *inference) (serveSide, error) {
		if !tier.HasCompletions() {
			rec.decide("completions_unsupported", "skipped")
			return nil, errNoCompletions(rec.alias).withDetail("text completion for a tier of dialect " + tier.Dialect)
		}
		return completionsServe{}, nil
	},
	reply: openAIReply,
	relay: openAIRelay,
}

// completionPrompt is one prompt of a text completion: its text, or the
// number of token ids it was sent as.
type completionPrompt struct {
	text   string
	tokens int
}

// completionPrompts reads a completion's prompt: a string, an array of
// strings (a batch), an array of token ids, or an array of token id
// arrays (a batch).
func completionPrompts(raw []byte) ([]completionPrompt, error) {
	bad := errBadRequest("prompt must be a string, an array of strings, an array of token ids or an array of token id arrays")
	if raw == nil || string(raw) == "null" {
		return nil, errBadRequest("prompt is required")
	}
	var one string
	if raw[0] == '"' {
		if json.Unmarshal(raw, &one) != nil {
			return nil, bad
		}
		return []completionPrompt{{text: one}}, nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, bad
	}
	if len(items) == 0 {
		return nil, errBadRequest("prompt must not be an empty array")
	}
	var ids []int64
	switch items[0][0] {
	case '"':
		out := make([]completionPrompt, len(items))
		for i, it := range items {
			if it[0] != '"' || json.Unmarshal(it, &out[i].text) != nil {
				return nil, bad
			}
		}
		return out, nil
	case '[':
		out := make([]completionPrompt, len(items))
		for i, it := range items {
			if json.Unmarshal(it, &ids) != nil || len(ids) == 0 {
				return nil, bad
			}
			out[i].tokens = len(ids)
		}
		return out, nil
	default:
		if json.Unmarshal(raw, &ids) != nil {
			return nil, bad
		}
		return []completionPrompt{{tokens: len(ids)}}, nil
	}
}

// messagesAPI is POST /v1/messages (Anthropic Messages): translated to
// OpenAI Chat for OpenAI-dialect tiers and back, event by event; passed
// through to Anthropic tiers with only model, max_tokens (capped) and the
// operator's overrides edited, and the serve's events relayed as sent but
// for message_start's model.
var messagesAPI = &callerAPI{
	env:    envAnthropic,
	native: "anthropic",
	parse: func(q *inference) error {
		// The caller's own bytes first: duplicates and case variants of
		// router-owned keys are refused before the translator reads them.
		if _, err := parseObject(q.body); err != nil {
			return err
		}
		out, info, err := dialect.AnthropicToOpenAI(q.body, dialect.ToOpenAIOptions{})
		if err != nil {
			return requestError(err)
		}
		return q.translated(out, info)
	},
	parseNative: func(q *inference) error {
		req, err := parseObject(q.body)
		if err != nil {
			return err
		}
		q.native = req
		q.modelJSON = req.Get("model")
		if len(q.modelJSON) == 0 || q.modelJSON[0] != '"' {
			q.modelJSON = jsonobj.String(q.info.Model)
		}
		return nil
	},
	reply: func(q *inference, body []byte) ([]byte, int, int, error) {
		if q.passthrough {
			p, c := backends.AnthropicReplyUsage(body)
			return backends.RewriteModel(body, q.modelJSON), p, c, nil
		}
		out, err := dialect.OpenAIResponseToAnthropic(body, q.info.Model)
		p, c := backends.ReplyUsage(body)
		return out, p, c, err
	},
	relay: func(q *inference) relay {
		if !q.passthrough {
			return translatedRelay(dialect.NewAnthropicStream(q.info.Model, q.info), q)
		}
		return relay{
			run: func(w io.Writer, f backends.Flusher, s *backends.Stream) (backends.RelayStats, error) {
				if q.gate != nil {
					return gatedAnthropicRelay(w, f, s, q.modelJSON, q.gate)
				}
				return backends.RelayAnthropic(w, f, s, q.modelJSON)
			},
			// message_stop was relayed: nothing follows a clean end.
			errorEvent: func() []byte { return streamErrorFrame(envAnthropic) },
		}
	},
}

// responsesAPI is POST /v1/responses, the stateless subset of the OpenAI
// Responses API that Codex-style clients speak. The request is translated
// to OpenAI Chat — strictly: anything the router cannot honour is refused
// by name — and the reply, streamed event by event, comes back as
// Responses events. Errors use the Responses envelope (code: null).
var responsesAPI = &callerAPI{
	env: envResponses,
	parse: func(q *inference) error {
		out, info, err := dialect.ResponsesToOpenAIWith(q.body, q.responsesOpts)
		if err != nil {
			return requestError(err)
		}
		return q.translated(out, info)
	},
	reply: func(q *inference, body []byte) ([]byte, int, int, error) {
		out, err := dialect.OpenAIResponseToResponses(body, q.info)
		p, c := backends.ReplyUsage(body)
		return out, p, c, err
	},
	relay: func(q *inference) relay {
		return translatedRelay(dialect.NewResponsesStream(q.info), q)
	},
}

// translated fills q from a caller request translated to OpenAI Chat.
func (q *inference) translated(chat []byte, info dialect.RequestInfo) error {
	req, err := jsonobj.Parse(chat)
	if err != nil {
		return errBadRequest("bad request body")
	}
	q.chat, q.info = req, info
	q.alias = backends.NormalizeAlias(info.Model)
	q.stream, q.toolStructure, q.promptTokens = info.Stream, info.ToolStructure, info.InputTokens
	return nil
}

// requestError maps a translation's refusal of a request: a feature the
// router does not offer is 400 unsupported_feature naming the fields, a
// malformed request 400 invalid_request_error.
func requestError(err error) error {
	var ue *dialect.UnsupportedError
	if errors.As(err, &ue) {
		return errUnsupported(ue.Error())
	}
	var re *dialect.RequestError
	if errors.As(err, &re) {
		return errBadRequest(re.Message)
	}
	// Name the offending field or position, never the caller's values.
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return errBadRequest(te.Field + ": wrong type (got a JSON " + te.Value + ")")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return errBadRequest("bad JSON body: " + se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10))
	}
	return errBadRequest("bad request body")
}

func (h *Handler) chat(w *recorder, r *http.Request, rec *record) error {
	return h.infer(w, r, rec, chatAPI)
}

func (h *Handler) messages(w *recorder, r *http.Request, rec *record) error {
	return h.infer(w, r, rec, messagesAPI)
}

func (h *Handler) responses(w *recorder, r *http.Request, rec *record) error {
	return h.infer(w, r, rec, responsesAPI)
}

func (h *Handler) completions(w *recorder, r *http.Request, rec *record) error {
	return h.infer(w, r, rec, completionsAPI)
}

// countTokens serves POST /v1/messages/count_tokens: an estimate (the
// serve has no such endpoint), documented as one.
func (h *Handler) countTokens(w *recorder, r *http.Request, rec *record) error {
	n, err := dialect.CountTokens(w.body)
	if err != nil {
		return requestError(err)
	}
	writeJSON(w, http.StatusOK, []byte(`{"input_tokens":`+strconv.Itoa(n)+"}\n"))
	return nil
}

// parseObject validates a JSON body and indexes its top-level members.
func parseObject(body []byte) (*jsonobj.Object, error) {
	if !jsonobj.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		msg := "bad JSON body"
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg += ": " + se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
		}
		return nil, errBadRequest(msg)
	}
	req, err := jsonobj.Parse(body)
	switch {
	case errors.Is(err, jsonobj.ErrNotObject):
		return nil, errBadRequest("body must be a JSON object")
	case errors.Is(err, jsonobj.ErrKeyVariant):
		// A serve decoding JSON case-insensitively would read "Model" or
		// "MAX_TOKENS" beside the field the router rewrote.
		return nil, errBadRequest("body has a case variant of a router-owned key (model, stream, max_tokens, max_completion_tokens, max_output_tokens)")
	case errors.Is(err, jsonobj.ErrDuplicateKey):
		return nil, errBadRequest("body has a duplicate top-level key")
	case err != nil:
		return nil, errBadRequest("bad JSON body")
	}
	return req, nil
}

var defaultChatModel = []byte(`"chat"`)

// requestModel returns the caller's model exactly as sent (a JSON string,
// echoed back in replies) and its normalized alias. Absent or empty means
// "chat", as the Python router had it.
func requestModel(req *jsonobj.Object) (raw []byte, alias string, _ error) {
	v := req.Get("model")
	if v == nil || string(v) == "null" || string(v) == `""` {
		return defaultChatModel, "chat", nil
	}
	var s string
	if v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return nil, "", errBadRequest("model must be a string")
	}
	return v, backends.NormalizeAlias(s), nil
}

// requestStream reads "stream" strictly: only JSON true streams. The Python
// router took any truthy value, so "false" (a string) streamed.
func requestStream(req *jsonobj.Object) (bool, error) {
	switch v := req.Get("stream"); string(v) {
	case "", "null", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, errBadRequest("stream must be a boolean")
	}
}
