package fakeserve

import (
	"bytes"
	"encoding/json"
)

// Tool round trips. A request whose last message is a tool result (role
// "tool") is answered with text quoting that result instead of another
// tool call: without this rule a client's tool loop (the SDKs' runTools and
// stream helpers, an agent) would call the tool forever, and quoting the
// result lets a test check that it travelled through the router intact.

// ToolResultPrefix starts the answer to a request whose last message is a
// tool result; the result's text follows it.
const ToolResultPrefix = "The tool said: "

// lastToolResult returns the text of the request's last message if that
// message is a tool result. Text parts of a list content are joined.
func lastToolResult(body []byte) (string, bool) {
	// Cheap pre-check: most requests carry no tool message at all, and the
	// benchmarked path must not pay for a second decode.
	if !bytes.Contains(body, []byte(`"tool"`)) {
		return "", false
	}
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &req) != nil || len(req.Messages) == 0 {
		return "", false
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != "tool" {
		return "", false
	}
	var s string
	if json.Unmarshal(last.Content, &s) == nil {
		return s, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(last.Content, &parts) == nil {
		var b []byte
		for _, p := range parts {
			if p.Type == "text" {
				b = append(b, p.Text...)
			}
		}
		return string(b), true
	}
	return "", true
}

// quoteDeltas are the content deltas of the answer quoting a tool result.
func quoteDeltas(result string) []string {
	return []string{ToolResultPrefix, result}
}

// deltaFrames encodes content deltas as chunk suffixes (the streamed
// counterpart of plan.deltaSuffix for per-request content).
func deltaFrames(deltas []string) [][]byte {
	out := make([][]byte, len(deltas))
	for i, d := range deltas {
		out[i] = concat(`{"index":0,"delta":{"content":`, string(jsonString(d)), `}`, choiceEnd)
	}
	return out
}
