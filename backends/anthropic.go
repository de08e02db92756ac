package backends

import (
	"encoding/json"
	"regexp"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// Anthropic-dialect tiers (dialect = "anthropic") take Anthropic Messages
// bodies at base_url + /v1/messages, with anthropic-version and the tier
// key as x-api-key (see endpoint.open). Bodies reach them two ways:
//
//   - same dialect (an Anthropic caller): PrepareAnthropic edits the
//     caller's bytes like PrepareOpenAI does for OpenAI tiers;
//   - translated (an OpenAI or Responses caller): the front door prepares
//     the OpenAI body with PrepareForTranslation (model and output cap, in
//     OpenAI terms, which translation carries over), translates it, then
//     ApplyExtraBody merges the operator's overrides into the Anthropic
//     body — operators write extra_body in the serve's dialect, so merging
//     it before translation would lose every Anthropic-only key.

// PrepareAnthropic builds the upstream body for a same-dialect (Anthropic
// Messages) request: the caller's bytes with only the model, the output
// cap (max_tokens) and the operator's overrides applied.
func (t *Tier) PrepareAnthropic(req *jsonobj.Object) ([]byte, *Clamp, error) {
	return t.prepare(req, true)
}

// PrepareForTranslation builds the OpenAI Chat body that will be translated
// for an Anthropic tier: model and output cap applied, operator overrides
// left for ApplyExtraBody.
func (t *Tier) PrepareForTranslation(req *jsonobj.Object) ([]byte, *Clamp, error) {
	return t.prepare(req, false)
}

// ApplyExtraBody merges extra_body_defaults (keys absent only) and then
// extra_body (overriding anything) into a body built by translation. A
// body that is not a JSON object is returned unchanged; the serve judges
// it.
func (t *Tier) ApplyExtraBody(body []byte) []byte {
	if len(t.extraBody) == 0 && len(t.extraBodyDefaults) == 0 {
		return body
	}
	req, err := jsonobj.Parse(body)
	if err != nil {
		return body
	}
	var e jsonobj.Edit
	t.overrides(&e)
	return req.Apply(&e)
}

// AnthropicUsage reads prompt and completion token counts from an
// Anthropic usage object (or a Messages reply carrying one). The prompt
// includes cache reads and writes, which Anthropic's input_tokens leaves
// out, so the numbers compare with an OpenAI serve's.
func AnthropicUsage(raw []byte) (prompt, completion int) {
	var u anthropicCounts
	u.merge(raw)
	return u.input + u.cacheRead + u.cacheCreate, u.output
}

// AnthropicReplyUsage reads the usage of a non-streaming Messages reply.
func AnthropicReplyUsage(body []byte) (prompt, completion int) {
	if s, e, ok := jsonobj.Find(body, "usage"); ok {
		return AnthropicUsage(body[s:e])
	}
	return 0, 0
}

// anthropicCounts accumulates a stream's usage: message_start reports the
// input side, message_delta the output (and may repeat the input).
type anthropicCounts struct {
	input, output, cacheRead, cacheCreate int
}

// merge takes the counts present in raw and keeps the others.
func (u *anthropicCounts) merge(raw []byte) {
	if len(raw) == 0 || raw[0] != '{' {
		return
	}
	var in struct {
		Input       *int `json:"input_tokens"`
		Output      *int `json:"output_tokens"`
		CacheRead   *int `json:"cache_read_input_tokens"`
		CacheCreate *int `json:"cache_creation_input_tokens"`
	}
	if json.Unmarshal(raw, &in) != nil {
		return
	}
	for _, f := range [...]struct {
		src *int
		dst *int
	}{{in.Input, &u.input}, {in.Output, &u.output}, {in.CacheRead, &u.cacheRead}, {in.CacheCreate, &u.cacheCreate}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
}

// anthropicErrorStatus is the HTTP status Anthropic's API pairs with each
// error type: an in-band error event is classified as if it had been that
// status.
var anthropicErrorStatus = map[string]int{
	"invalid_request_error": 400,
	"authentication_error":  401,
	"permission_error":      403,
	"not_found_error":       404,
	"request_too_large":     413,
	"rate_limit_error":      429,
	"api_error":             500,
	"overloaded_error":      529,
}

var errorTypeToken = regexp.MustCompile(`^[a-z_]{1,40}$`)

// classifyAnthropicInband reads an Anthropic error event's payload
// ({"type":"error","error":{"type":T,"message":M}}) as the status its type
// stands for: overloaded_error as the first event is exhaustion, like
// SGLang's in-band queue-full.
func classifyAnthropicInband(data []byte) *Error {
	typ := ""
	if s, e, ok := jsonobj.Find(data, "error"); ok && data[s] == '{' {
		if ts, te, ok := jsonobj.Find(data[s:e], "type"); ok {
			json.Unmarshal(data[s:e][ts:te], &typ)
		}
	}
	status, ok := anthropicErrorStatus[typ]
	if !ok {
		status = 500
	}
	if !errorTypeToken.MatchString(typ) {
		typ = "unknown"
	}
	err := classifyStatus(status, data, "")
	err.Detail = "in-band error event, type " + typ + " (" + strconv.Itoa(status) + ")"
	return err
}
