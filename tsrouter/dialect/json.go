package dialect

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"
)

// This file holds the JSON plumbing shared by both directions: predicates
// and writers that append JSON without reflection. Reading documents
// jsonobj.Valid has accepted (the streaming hot path, where decoding every
// chunk into structs would allocate per token) is jsonobj's Iter.

// isString reports whether v is a string literal; nonEmpty additionally
// requires it to hold at least one character.
func isString(v []byte) bool       { return len(v) >= 2 && v[0] == '"' }
func nonEmptyString(v []byte) bool { return len(v) > 2 && v[0] == '"' }

// isObject reports whether v is an object literal.
func isObject(v []byte) bool { return len(v) >= 2 && v[0] == '{' }

// atoi reads a non-negative integer literal (token counts, indexes).
func atoi(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// isNumber reports whether raw (already valid JSON) is a number literal.
func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// appendString appends s as a JSON string literal.
func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped appends s escaped for the inside of a JSON string. Only what
// JSON requires is escaped (plus U+2028/U+2029, which break JavaScript
// consumers that eval), so text reads the same on the wire; invalid UTF-8
// becomes U+FFFD as encoding/json would do.
func appendEscaped[T string | []byte](dst []byte, s T) []byte {
	const hexDigits = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// marshal encodes v compactly without HTML escaping: the bodies go to
// programs, and "<" reads better than "\u003c" in logs and goldens.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only reachable through a bug: every value here is plain data.
		panic("dialect: encoding " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// newID returns prefix followed by 24 random hex digits, the shape the
// Python router used for message, completion and tool-call ids.
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// str decodes raw as a string; anything else (absent, null, a number)
// yields "". Lenient parsing skips, it does not fail.
func str(raw json.RawMessage) string {
	if !isString(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// compactJSON returns raw without insignificant whitespace, or nil if raw is
// not valid JSON.
func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return nil
	}
	return b.Bytes()
}
