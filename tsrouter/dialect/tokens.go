package dialect

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// estimator accumulates the router's token estimate:
// max(whitespace-separated words, UTF-8 bytes / 4) over all the texts it
// was given. It is deliberately crude — no tokenizer matches every serve —
// and only stands in where a serve reports nothing: the input count in
// message_start, output counts when no usage arrived, and count_tokens.
type estimator struct {
	words, bytes int
	inWord       bool // the last text ended inside a word (streaming)
}

func (e *estimator) add(s string) {
	e.bytes += len(s)
	// Texts are separate: a word never continues from one into the next.
	e.inWord = false
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		e.step(isSpace(r))
		i += size
	}
	e.inWord = false
}

// addRaw counts the inside of a JSON string literal as it arrived on the
// wire, continuing words across calls: streamed fragments split words
// anywhere. Escapes are counted as what they stand for only as far as
// whitespace goes (\n, \t, \r), which is all the word count needs.
func (e *estimator) addRaw(inner []byte) {
	e.bytes += len(inner)
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' && i+1 < len(inner) {
			i++
			switch inner[i] {
			case 'n', 't', 'r':
				e.step(true)
				continue
			}
			e.step(false)
			continue
		}
		// Multi-byte UTF-8 never contains ASCII bytes, so bytewise works.
		e.step(c == ' ' || c == '\t' || c == '\n' || c == '\r')
	}
}

func (e *estimator) step(space bool) {
	if space {
		e.inWord = false
		return
	}
	if !e.inWord {
		e.words++
		e.inWord = true
	}
}

// addRawJSON counts a JSON value (tool inputs, schemas) by its bytes and
// words as written.
func (e *estimator) addRawJSON(raw []byte) {
	if len(raw) > 0 {
		e.add(string(raw))
	}
}

func (e *estimator) tokens() int { return max(e.words, e.bytes/4) }

func isSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', '\v', '\f', 0x85, 0xA0:
		return true
	}
	return r >= 0x2000 && (r <= 0x200a || r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000) || r == 0x1680
}

// CountTokens estimates the input tokens of an Anthropic Messages request
// for /v1/messages/count_tokens. It is an ESTIMATE, not a tokenizer count:
// max(whitespace-separated words, UTF-8 bytes / 4) over the text of the
// system prompt, the messages (text, thinking, tool inputs and results) and
// the tool definitions (name, description, schema). Images are not counted.
// Unlike a Messages request, max_tokens is not required here; a body that
// is not a JSON object, or has no messages array, is a *RequestError.
func CountTokens(body []byte) (int, error) {
	var req anthropicRequest
	if err := decodeObject(body, &req); err != nil {
		return 0, err
	}
	c, err := convertAnthropic(&req, ToOpenAIOptions{})
	if err != nil {
		return 0, err
	}
	return c.est.tokens(), nil
}

// decodeObject decodes a request body whose top level must be an object;
// every member is kept raw so one malformed field cannot fail the rest.
func decodeObject(body []byte, v any) error {
	i := jsonobj.SkipSpace(body, 0)
	if i >= len(body) || body[i] != '{' || json.Unmarshal(body, v) != nil {
		return &RequestError{Message: "request body must be a JSON object"}
	}
	return nil
}
