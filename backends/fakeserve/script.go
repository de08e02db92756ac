package fakeserve

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
)

// Scripted tool calls, for agents under test: a request whose last message
// is the user's and contains the line
//
//	fake:call NAME {"json":"arguments"}
//
// is answered with a call of tool NAME with exactly those arguments, when
// the request declares a tool of that name; a line "fake:text" gets the
// content answer although tools are declared. Without such a line (or
// without the tool) the usual rules apply. The tool result then gets the usual
// quoting answer, so each such prompt makes one tool round trip.

// ScriptPrefix starts the line that scripts a tool call.
const ScriptPrefix = "fake:call "

var (
	scriptLine = regexp.MustCompile(`(?m)^fake:call ([A-Za-z0-9_.-]+) (\{.*\})\s*$`)
	textLine   = regexp.MustCompile(`(?m)^fake:text\s*$`)
)

// scriptedCall returns the tool call scripted by the last user message;
// ok with an empty name means a content answer.
func scriptedCall(body []byte, req *chatRequest) (name, args string, ok bool) {
	if len(req.Tools) == 0 || !bytes.Contains(body, []byte("fake:")) {
		return "", "", false
	}
	var doc struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &doc) != nil || len(doc.Messages) == 0 {
		return "", "", false
	}
	last := doc.Messages[len(doc.Messages)-1]
	if last.Role != "user" {
		return "", "", false
	}
	var text string
	if json.Unmarshal(last.Content, &text) != nil {
		var parts []struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(last.Content, &parts) != nil {
			return "", "", false
		}
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		text = b.String()
	}
	if textLine.MatchString(text) {
		return "", "", true
	}
	m := scriptLine.FindStringSubmatch(text)
	if m == nil || !json.Valid([]byte(m[2])) {
		return "", "", false
	}
	for _, t := range req.Tools {
		if t.Function.Name == m[1] {
			return m[1], m[2], true
		}
	}
	return "", "", false
}

// scriptedArgFrame carries a scripted call's arguments in one delta.
func scriptedArgFrame(args string) []byte {
	return concat(`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`, string(jsonString(args)), `}}]}`, choiceEnd)
}
