package jsonobj

import (
	"encoding/binary"
	"math/bits"
)

// maxDepth is encoding/json's nesting limit; Valid agrees with it.
const maxDepth = 10000

// Valid reports whether b is exactly one JSON value, optionally surrounded
// by whitespace: the answer encoding/json.Valid gives (the fuzz test holds
// the two to it), several times faster. Every request body and buffered
// reply is checked before the scanner of this package edits it; agent
// prompts run to hundreds of kilobytes, where encoding/json's byte-at-a-time
// state machine cost more than the rest of the router's work together.
// Strings — most of any prompt — are skipped eight bytes at a time.
func Valid(b []byte) bool {
	var stackBuf [64]byte
	stack := stackBuf[:0] // open containers, '{' or '['
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxDepth {
				return false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']' right away
				i++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if i = validKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = endOfString(b, i); i < 0 {
				return false
			}
		case c == 't':
			if i = literal(b, i, "true"); i < 0 {
				return false
			}
		case c == 'f':
			if i = literal(b, i, "false"); i < 0 {
				return false
			}
		case c == 'n':
			if i = literal(b, i, "null"); i < 0 {
				return false
			}
		default:
			if i = endOfNumber(b, i); i < 0 {
				return false
			}
		}
		// After a value: close containers or move to the next element.
		for {
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				if i = validKey(b, i); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// validKey checks `"key" :` at i and returns where the value starts, or -1.
func validKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = endOfString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

func literal(b []byte, i int, word string) int {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return -1
	}
	return i + len(word)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// endOfString returns the index after the string starting at b[i] == '"',
// or -1. Control characters must be escaped; other bytes pass (like
// encoding/json, invalid UTF-8 is not an error).
func endOfString(b []byte, i int) int {
	i++
	for {
		// Skip eight ordinary bytes at a time: none is '"', '\\' or below
		// 0x20. Each test is exact about whether such a byte exists.
		for len(b)-i >= 8 {
			w := binary.LittleEndian.Uint64(b[i:])
			quote := w ^ (lsb * '"')
			slash := w ^ (lsb * '\\')
			special := ((quote - lsb) &^ quote) | ((slash - lsb) &^ slash) | ((w - lsb*0x20) &^ w)
			if special&msb == 0 {
				i += 8
				continue
			}
			// The first flagged byte is exact: borrows only run upwards.
			i += bits.TrailingZeros64(special&msb) / 8
			break
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// endOfNumber returns the index after the number at b[i], or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func endOfNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// quoteOrBackslash returns the index of the first '"' or '\\' in b, or -1:
// bytes.IndexAny for those two, eight bytes at a time (IndexAny's set
// handling costs more than the search on the short strings of a request).
func quoteOrBackslash(b []byte) int {
	i := 0
	for ; len(b)-i >= 8; i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		quote := w ^ (lsb * '"')
		slash := w ^ (lsb * '\\')
		if found := (((quote - lsb) &^ quote) | ((slash - lsb) &^ slash)) & msb; found != 0 {
			return i + bits.TrailingZeros64(found)/8
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '"' || b[i] == '\\' {
			return i
		}
	}
	return -1
}
