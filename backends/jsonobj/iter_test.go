package jsonobj_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// FuzzIter checks the iterators against encoding/json on every valid
// document: the same elements, byte for byte, and the same value for each
// member whose key is written without escapes and not repeated.
func FuzzIter(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, ` { "a" : 1 , "b":[1,{"c":"}"}] } `, `[1, "x", {"k":null}, [true,false]]`,
		`{"a\"b":1,"a":2,"a":3}`, `{"delta":{"content":"tok\n"},"index":0}`, `[ ]`, `"s"`, `12`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			return
		}
		v := doc[jsonobj.SkipSpace(doc, 0):]
		v = bytes.TrimRight(v, " \t\r\n")
		switch v[0] {
		case '[':
			var want []json.RawMessage
			if err := json.Unmarshal(v, &want); err != nil {
				t.Fatal(err)
			}
			it := jsonobj.ElementIter(v)
			n := 0
			for el, ok := it.Element(); ok; el, ok = it.Element() {
				if n >= len(want) || !bytes.Equal(el, want[n]) {
					t.Fatalf("element %d = %q", n, el)
				}
				n++
			}
			if n != len(want) {
				t.Fatalf("%d elements, encoding/json has %d", n, len(want))
			}
		case '{':
			var want map[string]json.RawMessage
			if err := json.Unmarshal(v, &want); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			var got [][2][]byte
			it := jsonobj.MemberIter(v)
			for k, val, ok := it.Member(); ok; k, val, ok = it.Member() {
				seen[string(k)]++
				got = append(got, [2][]byte{k, val})
			}
			if len(got) < len(want) {
				t.Fatalf("%d members, encoding/json has %d keys", len(got), len(want))
			}
			for _, m := range got {
				k := string(m[0])
				if bytes.IndexByte(m[0], '\\') >= 0 || seen[k] > 1 {
					continue
				}
				if w, ok := want[k]; ok && !bytes.Equal(m[1], w) {
					t.Fatalf("member %q = %q, encoding/json has %q", k, m[1], w)
				}
			}
		default:
			it := jsonobj.MemberIter(v)
			if _, _, ok := it.Member(); ok {
				t.Fatal("a scalar has members")
			}
			it = jsonobj.ElementIter(v)
			if _, ok := it.Element(); ok {
				t.Fatal("a scalar has elements")
			}
		}
	})
}
