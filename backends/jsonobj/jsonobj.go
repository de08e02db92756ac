// Package jsonobj reads and edits the top level of a JSON object in place,
// without decoding or re-encoding the rest of it. The relay uses it to change
// the few fields it must (model, token limits, operator overrides) while every
// other byte the caller or the serve sent passes through unchanged. Iter
// reads nested objects and arrays the same way (the dialect translators use
// it on every streamed chunk).
//
// Callers validate the document first (Valid, which agrees with
// encoding/json.Valid and is faster); the scanner then only
// needs to find where each top-level value starts and ends.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Errors returned by Fields.
var (
	ErrNotObject    = errors.New("body must be a JSON object")
	ErrDuplicateKey = errors.New("duplicate top-level key")
	// ErrKeyVariant is a case variant of a router-owned key ("Model",
	// "MAX_TOKENS"). It wraps ErrDuplicateKey: to a serve whose JSON
	// decoder matches keys case-insensitively (Go's encoding/json does) it
	// is a second copy of the key the router rewrote.
	ErrKeyVariant = fmt.Errorf("%w: case variant of a router-owned key", ErrDuplicateKey)
	errMalformed  = errors.New("malformed JSON")
)

// Field is one top-level member: Key is unescaped, Value is the raw value
// bytes (a sub-slice of the document).
type Field struct {
	Key        string
	Start, End int // Value == doc[Start:End]
	Value      []byte
	// memberStart/memberEnd cover `"key": value` for deletion.
	memberStart, memberEnd int
}

// Object is a scanned top-level JSON object.
type Object struct {
	Doc    []byte
	Fields []Field
}

// RouterOwned are the top-level request keys the router reads or rewrites.
// Parse refuses any other spelling of them that a case-insensitive decoder
// would take for the same key.
var RouterOwned = [...]string{"model", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens"}

// Parse scans the top level of doc, which must be valid JSON. Duplicate
// top-level keys are rejected: JSON parsers disagree on which copy wins, and
// the router must see the same value the serve will act on. For the same
// reason case variants of RouterOwned keys are rejected (ErrKeyVariant).
func Parse(doc []byte) (*Object, error) {
	o := &Object{Doc: doc}
	return o, o.parse()
}

func (o *Object) parse() error {
	return walk(o.Doc, func(quotedKey []byte, start, end, memberStart int) bool {
		o.Fields = append(o.Fields, Field{Key: unquoteKey(quotedKey), Start: start, End: end, Value: o.Doc[start:end], memberStart: memberStart, memberEnd: end})
		return false
	}, func() error {
		last := o.Fields[len(o.Fields)-1].Key
		for _, f := range o.Fields[:len(o.Fields)-1] {
			if f.Key == last {
				return ErrDuplicateKey
			}
		}
		if variantOfRouterOwned(last) {
			return ErrKeyVariant
		}
		return nil
	})
}

// variantOfRouterOwned reports whether key is not a RouterOwned key but
// folds to one the way encoding/json matches names (Unicode simple case
// folding: "Model", "MAX_TOKENS", and "ſtream" with U+017F or a Kelvin sign
// for k). It does not allocate.
func variantOfRouterOwned(key string) bool {
	if len(key) < len("model") {
		return false
	}
	// Every RouterOwned key starts with m or s; their case variants start
	// with M, S or U+017F (0xC5 0xBF).
	switch key[0] {
	case 'm', 'M', 's', 'S', 0xC5:
	default:
		return false
	}
	for _, k := range RouterOwned {
		if key != k && strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// walk scans the top level of the object in doc, calling member for each
// `"key": value` (the quoted key and the value's span) until it returns
// true, and after each member check (if non-nil), whose error ends the
// walk. It reports malformed structure and trailing bytes after the
// object; values are delimited, not parsed.
func walk(b []byte, member func(quotedKey []byte, start, end, memberStart int) (stop bool), check func() error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ErrNotObject
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trailing(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errMalformed
		}
		memberStart := i
		keyEnd, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i:keyEnd]
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return errMalformed
		}
		i = skipSpace(b, i+1)
		end, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if member(key, i, end, memberStart) {
			return nil
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return errMalformed
		}
		if b[i] == '}' {
			return trailing(b, i+1)
		}
		if b[i] != ',' {
			return errMalformed
		}
		i = skipSpace(b, i+1)
	}
}

// Get returns the raw value of key, or nil if absent.
func (o *Object) Get(key string) []byte {
	if f := o.field(key); f != nil {
		return f.Value
	}
	return nil
}

// Has reports whether key is present (even with a null value).
func (o *Object) Has(key string) bool { return o.field(key) != nil }

func (o *Object) field(key string) *Field {
	for i := range o.Fields {
		if o.Fields[i].Key == key {
			return &o.Fields[i]
		}
	}
	return nil
}

// Find returns the span of the top-level value of key in doc without
// building a Field list: the per-event path of the streaming relay uses it.
// doc must be a valid JSON object; ok is false if the key is absent or doc
// is not an object.
func Find(doc []byte, key string) (start, end int, ok bool) {
	walk(doc, func(k []byte, s, e, _ int) bool {
		if keyEquals(k, key) {
			start, end, ok = s, e, true
			return true
		}
		return false
	}, nil)
	return start, end, ok
}

// Edit is a set of top-level changes applied in one pass by Apply.
type Edit struct {
	set   []member // replace if present, else append
	dflt  []member // append only if absent (and not set)
	order []string
}

type member struct {
	key string
	raw []byte
}

// Set replaces key's value with raw (valid JSON), or appends it.
func (e *Edit) Set(key string, raw []byte) {
	for i := range e.set {
		if e.set[i].key == key {
			e.set[i].raw = raw
			return
		}
	}
	e.set = append(e.set, member{key, raw})
}

// Default appends key with raw only if the object has no such key and no
// Set names it.
func (e *Edit) Default(key string, raw []byte) {
	e.dflt = append(e.dflt, member{key, raw})
}

// Empty reports whether the edit changes nothing.
func (e *Edit) Empty() bool { return len(e.set) == 0 && len(e.dflt) == 0 }

// Apply returns the edited document. Untouched members keep their exact
// bytes and order; replaced values keep their position; new members are
// appended before the closing brace. If the edit is empty, o.Doc itself is
// returned.
func (o *Object) Apply(e *Edit) []byte {
	if e.Empty() {
		return o.Doc
	}
	doc := o.Doc
	out := make([]byte, 0, len(doc)+64*(len(e.set)+len(e.dflt)))
	last := 0
	for i := range o.Fields {
		f := &o.Fields[i]
		for _, m := range e.set {
			if m.key == f.Key {
				out = append(out, doc[last:f.Start]...)
				out = append(out, m.raw...)
				last = f.End
				break
			}
		}
	}
	// Everything up to the closing brace of the object.
	closing := bytes.LastIndexByte(doc, '}')
	out = append(out, doc[last:closing]...)
	n := len(o.Fields)
	appendMember := func(key string, raw []byte) {
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = appendString(out, key)
		out = append(out, ':')
		out = append(out, raw...)
	}
	for _, m := range e.set {
		if !o.Has(m.key) {
			appendMember(m.key, m.raw)
		}
	}
	for _, m := range e.dflt {
		if o.Has(m.key) || e.sets(m.key) {
			continue
		}
		appendMember(m.key, m.raw)
	}
	return append(out, doc[closing:]...)
}

func (e *Edit) sets(key string) bool {
	for _, m := range e.set {
		if m.key == key {
			return true
		}
	}
	return false
}

// ReplaceValue returns doc with the bytes doc[start:end] replaced by raw,
// written into dst (which may be nil).
func ReplaceValue(dst, doc []byte, start, end int, raw []byte) []byte {
	dst = append(dst, doc[:start]...)
	dst = append(dst, raw...)
	return append(dst, doc[end:]...)
}

// AppendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // strings always marshal
	return append(dst, b...)
}

// String returns s encoded as a JSON string literal.
func String(s string) []byte {
	return appendString(nil, s)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the closing quote of the string
// starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := quoteOrBackslash(b[i:])
		if j < 0 {
			return 0, errMalformed
		}
		i += j
		if b[i] == '"' {
			return i + 1, nil
		}
		i += 2 // backslash and the escaped byte
		if i > len(b) {
			return 0, errMalformed
		}
	}
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errMalformed
	default: // number, true, false, null
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, errMalformed
				}
				return j, nil
			}
			j++
		}
		return 0, errMalformed
	}
}

func keyEquals(quoted []byte, key string) bool {
	inner := quoted[1 : len(quoted)-1]
	if plainKey(inner) {
		return string(inner) == key
	}
	return unquoteKey(quoted) == key
}

// plainKey reports whether a key's bytes are its value: no escapes and
// valid UTF-8 (encoding/json turns each invalid byte into U+FFFD, and the
// router must agree with it on which keys are equal).
func plainKey(inner []byte) bool {
	return bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner)
}

func unquoteKey(quoted []byte) string {
	inner := quoted[1 : len(quoted)-1]
	if plainKey(inner) {
		return string(inner)
	}
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return strings.ToValidUTF8(string(inner), "\uFFFD")
	}
	return s
}

// Span is where a top-level member's value sits in a document; Start < 0
// means the member is absent.
type Span struct{ Start, End int }

// Found reports whether the member was present.
func (s Span) Found() bool { return s.Start >= 0 }

// Members scans doc once: it checks that doc is one structurally sound JSON
// object (balanced, strings terminated, nothing after it) and records the
// value span of each of keys into spans (same length as keys). It does not
// allocate, which is why the streaming relay uses it on every event instead
// of json.Valid plus several lookups. Scalars are delimited, not parsed: a
// garbled literal inside a well-formed object is left for the client.
func Members(doc []byte, keys []string, spans []Span) error {
	for i := range spans {
		spans[i] = Span{-1, -1}
	}
	return walk(doc, func(k []byte, start, end, _ int) bool {
		for j, key := range keys {
			if spans[j].Start < 0 && keyEquals(k, key) {
				spans[j] = Span{start, end}
			}
		}
		return false
	}, nil)
}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errMalformed
	}
	return nil
}
