package jsonobj_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    map[string]string
		wantErr error
	}{
		{name: "empty object", doc: ` { } `, want: map[string]string{}},
		{name: "nested values and odd spacing", doc: "{\"a\" :\t[1, {\"b\":\"}\"}] ,\n\"c\":\"x\\\"y\",\"d\":-1.5e3,\"e\":null}",
			want: map[string]string{"a": `[1, {"b":"}"}]`, "c": `"x\"y"`, "d": `-1.5e3`, "e": `null`}},
		{name: "escaped key", doc: `{"mod\u0065l":"m"}`, want: map[string]string{"model": `"m"`}},
		{name: "array", doc: `[1]`, wantErr: jsonobj.ErrNotObject},
		{name: "string", doc: `"x"`, wantErr: jsonobj.ErrNotObject},
		{name: "duplicate key", doc: `{"model":"a","model":"b"}`, wantErr: jsonobj.ErrDuplicateKey},
		{name: "duplicate key via escape", doc: `{"model":"a","mod\u0065l":"b"}`, wantErr: jsonobj.ErrDuplicateKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := jsonobj.Parse([]byte(tc.doc))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			got := map[string]string{}
			for _, f := range o.Fields {
				got[f.Key] = string(f.Value)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		edit func(*jsonobj.Edit)
		want string
	}{
		{name: "no edit returns the document", doc: "{ \"a\" : 1 }", edit: func(*jsonobj.Edit) {}, want: "{ \"a\" : 1 }"},
		{name: "replace keeps position and spacing", doc: "{\"a\": 1,\n \"model\" :  \"x\", \"z\":[ ]}", edit: func(e *jsonobj.Edit) { e.Set("model", []byte(`"y"`)) },
			want: "{\"a\": 1,\n \"model\" :  \"y\", \"z\":[ ]}"},
		{name: "append to empty object", doc: `{}`, edit: func(e *jsonobj.Edit) { e.Set("a", []byte(`1`)) }, want: `{"a":1}`},
		{name: "default only when absent", doc: `{"a":1}`, edit: func(e *jsonobj.Edit) { e.Default("a", []byte(`2`)); e.Default("b", []byte(`3`)) }, want: `{"a":1,"b":3}`},
		{name: "set beats default", doc: `{}`, edit: func(e *jsonobj.Edit) { e.Default("a", []byte(`2`)); e.Set("a", []byte(`9`)) }, want: `{"a":9}`},
		{name: "later set wins", doc: `{"a":1}`, edit: func(e *jsonobj.Edit) { e.Set("a", []byte(`2`)); e.Set("a", []byte(`3`)) }, want: `{"a":3}`},
		{name: "trailing whitespace kept", doc: "{\"a\":1}\n", edit: func(e *jsonobj.Edit) { e.Set("b", []byte(`true`)) }, want: "{\"a\":1,\"b\":true}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := jsonobj.Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			var e jsonobj.Edit
			tc.edit(&e)
			if got := string(o.Apply(&e)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzEdit checks the scanner against encoding/json on arbitrary valid
// objects: every top-level value is found intact, and an edit yields valid
// JSON whose decoded form is exactly the original plus the edit.
func FuzzEdit(f *testing.F) {
	for _, s := range []string{`{}`, `{"model":"x","messages":[{"role":"user","content":"a\"}"}]}`, "{\"a\":\n1 , \"b\" : {\"c\":[true,null]}}", `{"\u00e9":"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		var want map[string]any
		if json.Unmarshal(doc, &want) != nil || want == nil || !json.Valid(doc) {
			return
		}
		o, err := jsonobj.Parse(doc)
		if errors.Is(err, jsonobj.ErrDuplicateKey) {
			return
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if len(o.Fields) != len(want) {
			t.Fatalf("fields %d, want %d", len(o.Fields), len(want))
		}
		for _, fl := range o.Fields {
			var v any
			if err := json.Unmarshal(fl.Value, &v); err != nil || !reflect.DeepEqual(v, want[fl.Key]) {
				t.Fatalf("field %q = %s, want %v", fl.Key, fl.Value, want[fl.Key])
			}
			if s, e, ok := jsonobj.Find(doc, fl.Key); !ok || string(doc[s:e]) != string(fl.Value) {
				t.Fatalf("Find(%q) disagrees with Parse", fl.Key)
			}
		}
		keys := make([]string, len(o.Fields))
		for i, fl := range o.Fields {
			keys[i] = fl.Key
		}
		spans := make([]jsonobj.Span, len(keys))
		if err := jsonobj.Members(doc, keys, spans); err != nil {
			t.Fatalf("Members rejects a valid object: %v", err)
		}
		for i, fl := range o.Fields {
			if spans[i].Start != fl.Start || spans[i].End != fl.End {
				t.Fatalf("Members and Parse disagree on %q", fl.Key)
			}
		}
		var e jsonobj.Edit
		e.Set("model", []byte(`"m"`))
		e.Default("zz_default", []byte(`[1]`))
		var got map[string]any
		if err := json.Unmarshal(o.Apply(&e), &got); err != nil {
			t.Fatalf("edited document invalid: %v", err)
		}
		want["model"] = "m"
		if _, ok := want["zz_default"]; !ok {
			want["zz_default"] = []any{1.0}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("edited %v, want %v", got, want)
		}
	})
}

func TestMembers(t *testing.T) {
	keys := []string{"model", "error", "choices"}
	tests := []struct {
		name    string
		doc     string
		want    []string // value per key, "" = absent
		wantErr bool
	}{
		{name: "chunk", doc: `{"id":"x","model" : "m","choices":[{"delta":{"content":"}"}}]}`, want: []string{`"m"`, "", `[{"delta":{"content":"}"}}]`}},
		{name: "error event", doc: `{"error":{"code":503}}`, want: []string{"", `{"code":503}`, ""}},
		{name: "empty", doc: ` {} `, want: []string{"", "", ""}},
		{name: "first duplicate wins, as a scanner cannot know better", doc: `{"model":"a","model":"b"}`, want: []string{`"a"`, "", ""}},
		{name: "truncated", doc: `{"index":0,"delta":{"content":"<malformed chunk`, wantErr: true},
		{name: "trailing garbage", doc: `{"a":1} x`, wantErr: true},
		{name: "not an object", doc: `[DONE]`, wantErr: true},
		{name: "missing colon", doc: `{"a" 1}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spans := make([]jsonobj.Span, len(keys))
			err := jsonobj.Members([]byte(tc.doc), keys, spans)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			for i, sp := range spans {
				got := ""
				if sp.Found() {
					got = tc.doc[sp.Start:sp.End]
				}
				if got != tc.want[i] {
					t.Errorf("%s = %q, want %q", keys[i], got, tc.want[i])
				}
			}
		})
	}
}
