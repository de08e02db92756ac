package backends

import (
	"strings"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// A serve's own explanation of a 4xx ("maximum context length is 4096
// tokens") is useful to the caller, but it is text the router does not
// control: it may name hosts, paths, or carry a key. Rather than trying to
// recognise every dangerous shape, the router passes a message on only
// when every word of it has a shape that cannot carry a location or a
// secret (safeMessage); anything else is replaced by the fixed message.

// Limits of the allowed shapes. Real validation messages stay well inside
// them; keys, tokens and hashes do not.
const (
	maxMessageBytes = 300
	maxMessageWords = 60
	maxWordLetters  = 20 // a plain word
	maxCapsLetters  = 4  // an all-caps word (JSON, API, GPU)
	maxSnakeParts   = 4  // max_completion_tokens
	maxSnakePart    = 12
	maxDigits       = 12
)

// upstreamMessage extracts the serve's own explanation of a 4xx when it is
// safe to show, and fallback otherwise.
func upstreamMessage(body []byte, fallback string) string {
	if s, e, ok := jsonobj.Find(body, "error"); ok && body[s] == '{' {
		body = body[s:e]
	}
	s, e, ok := jsonobj.Find(body, "message")
	if !ok || body[s] != '"' {
		return fallback
	}
	var msg string
	if jsonUnmarshalString(body[s:e], &msg) != nil {
		return fallback
	}
	msg = strings.TrimSpace(msg)
	if !safeMessage(msg) {
		return fallback
	}
	return fallback + ": " + msg
}

// safeMessage reports whether msg is made only of words of safe shapes,
// separated by single spaces: lowercase or Capitalised words of letters
// (with an 's or n't ending), short all-caps words, snake_case field names
// of short lowercase parts, and decimal numbers (optionally negative, one
// decimal point) and comparison signs (< > = and the like), each
// optionally wrapped in ( ) or quotes and followed by
// . , ; : ! ? or ). Nothing with a slash, @, a second dot, digits inside
// letters, mixed case or long runs gets through, so no host, address,
// path, URL, e-mail or key shape can.
func safeMessage(msg string) bool {
	if msg == "" || len(msg) > maxMessageBytes {
		return false
	}
	words := 0
	for w := range strings.SplitSeq(msg, " ") {
		words++
		if words > maxMessageWords || !safeWord(w) {
			return false
		}
	}
	return true
}

func safeWord(w string) bool {
	w = strings.TrimLeft(w, `(["'`)
	w = strings.TrimRight(w, `.,;:!?)]"'`)
	switch {
	case w == "":
		return true
	case len(w) <= 2 && strings.Trim(w, "<>=+-*") == "":
		return true // a comparison: "5000 tokens > 4096 maximum"
	case isNumber(w):
		return true
	case strings.Contains(w, "_"):
		return isSnake(w)
	}
	if base, ok := strings.CutSuffix(w, "'s"); ok {
		w = base
	} else if base, ok := strings.CutSuffix(w, "n't"); ok {
		w = base
	}
	return isPlainWord(w)
}

// isPlainWord: "tokens", "However", "JSON"; not "vLLM", "AKIA…", "eyJ…".
func isPlainWord(w string) bool {
	if w == "" || len(w) > maxWordLetters {
		return false
	}
	upper := 0
	for i := 0; i < len(w); i++ {
		c := w[i]
		switch {
		case c >= 'a' && c <= 'z':
		case c >= 'A' && c <= 'Z':
			upper++
		default:
			return false
		}
	}
	switch {
	case upper == 0:
		return true
	case upper == 1:
		return w[0] >= 'A' && w[0] <= 'Z' // Capitalised
	default:
		return upper == len(w) && len(w) <= maxCapsLetters
	}
}

// isSnake: "max_tokens", "top_p"; parts of lowercase letters only.
func isSnake(w string) bool {
	parts := 0
	for p := range strings.SplitSeq(w, "_") {
		parts++
		if parts > maxSnakeParts || p == "" || len(p) > maxSnakePart {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < 'a' || p[i] > 'z' {
				return false
			}
		}
	}
	return true
}

// isNumber: "4096", "-1", "0.5"; not "10.0.0.5" or "1e9".
func isNumber(w string) bool {
	w = strings.TrimPrefix(w, "-")
	intPart, frac, hasDot := strings.Cut(w, ".")
	return digitsOnly(intPart) && (!hasDot || digitsOnly(frac)) && len(intPart)+len(frac) <= maxDigits
}

func digitsOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
