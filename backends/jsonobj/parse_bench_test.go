package jsonobj_test

import (
	"testing"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// BenchmarkParse is the per-request cost of indexing a body's top level.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct{ name, doc string }{
		{"chat", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"Say hello."}],"max_tokens":64,"temperature":0.2}`},
		{"many-keys", `{"model":"chat","messages":[],"stream":false,"max_tokens":64,"max_completion_tokens":64,"temperature":0.2,"top_p":0.9,"n":1,"seed":7,"stop":["x"],"presence_penalty":0,"frequency_penalty":0,"logit_bias":{},"user":"u","tools":[],"tool_choice":"auto","response_format":{"type":"text"},"reasoning_effort":"low","metadata":{},"store":false}`},
	} {
		doc := []byte(tc.doc)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jsonobj.Parse(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
