package jsonobj_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

func TestValid(t *testing.T) {
	deep := func(n int, open, close string) string { return strings.Repeat(open, n) + strings.Repeat(close, n) }
	long := `"` + strings.Repeat("abcdefgh é ", 50) + `"`
	tests := []struct {
		name string
		doc  string
	}{
		{"empty", ``},
		{"whitespace only", " \n\t"},
		{"empty object", ` { } `},
		{"empty array", `[]`},
		{"nested", `{"a":[1,{"b":"}"},[]],"c":{"d":null,"e":true,"f":false}}`},
		{"scalars", `-0.5e+10`},
		{"leading zero", `01`},
		{"minus alone", `-`},
		{"dot without digits", `1.`},
		{"exponent without digits", `1e+`},
		{"bare string", `"x"`},
		{"escapes", `"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"`},
		{"bad escape", `"\x"`},
		{"short unicode escape", `"\u12"`},
		{"non-hex unicode escape", `"\u12g4"`},
		{"raw newline in string", "\"a\nb\""},
		{"raw tab in string", "\"a\tb\""},
		{"invalid utf-8 passes", "\"\xff\xfe\""},
		{"unterminated string", `"abc`},
		{"unterminated long string", long[:len(long)-1]},
		{"long string", long},
		{"quote at every offset of a word", `["a","ab","abc","abcd","abcde","abcdef","abcdefg","abcdefgh","abcdefghi"]`},
		{"escape at a word boundary", `"abcdefg\"hijklmno\\"`},
		{"control char after 8 bytes", "\"abcdefgh\x01\""},
		{"trailing comma in object", `{"a":1,}`},
		{"trailing comma in array", `[1,]`},
		{"missing colon", `{"a" 1}`},
		{"non-string key", `{1:2}`},
		{"mismatched close", `[1}`},
		{"two values", `{} {}`},
		{"trailing garbage", `{}x`},
		{"truncated literal", `tru`},
		{"literal prefix", `nulls`},
		{"depth 10000", deep(10000, "[", "]")},
		{"depth 10001", deep(10001, "[", "]")},
		{"depth 10000 objects", deep(10000, `{"a":`, "}")},
		{"depth 10001 objects", deep(10001, `{"a":`, "}")},
		{"unclosed", `[[`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := json.Valid([]byte(tc.doc))
			if got := jsonobj.Valid([]byte(tc.doc)); got != want {
				t.Fatalf("Valid = %v, encoding/json says %v", got, want)
			}
		})
	}
}

// FuzzValid holds Valid to encoding/json's answer on every input.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{}`, `{"model":"x","messages":[{"role":"user","content":"a\"}"}]}`, `[1,-2.5e3,true,null,"\u00e9"]`, "\"abcdefgh\\\"ijk\x1f\"", `{"a":{"b":[[]]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if got, want := jsonobj.Valid(doc), json.Valid(doc); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", doc, got, want)
		}
	})
}

// BenchmarkValid compares with encoding/json on a request shaped like an
// agent's: a long history of mostly prose and code.
//
//	go test -run '^$' -bench Valid -benchmem ./backends/jsonobj/
func BenchmarkValid(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString(`{"model":"chat","stream":true,"messages":[`)
	for i := range 60 {
		if i > 0 {
			buf.WriteByte(',')
		}
		content, _ := json.Marshal(strings.Repeat("func main() {\n\tfmt.Println(\"hello, world\")\n}\nSome prose about the code. ", 6))
		buf.WriteString(`{"role":"user","content":` + string(content) + `}`)
	}
	buf.WriteString(`],"tools":[{"type":"function","function":{"name":"read","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}],"max_tokens":1024,"temperature":0.2}`)
	doc := buf.Bytes()
	for _, impl := range []struct {
		name  string
		valid func([]byte) bool
	}{{"encoding-json", json.Valid}, {"jsonobj", jsonobj.Valid}} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if !impl.valid(doc) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
