package tsrouter

import (
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// BenchmarkGuardOpenAIChunk is the output gate's cost per streamed
// OpenAI chunk (decode, gate, re-encode) with the pii provider on.
func BenchmarkGuardOpenAIChunk(b *testing.B) {
	e, err := guard.New(guard.Config{Enabled: true, Mode: guard.ModeEnforce, MaxHold: 4096, Providers: []guard.ProviderConfig{
		{Name: "pii", Type: "pii", Enabled: true, Input: true, Output: true, OnError: guard.FailOpen, Apply: guard.ApplyAll}}}, guard.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	chunk := []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" the quick brown"},"finish_reason":null}]}`)
	b.ReportAllocs()
	sg := &streamGuard{ctx: b.Context(), e: e, gates: map[string]*guard.Gate{}, kinds: map[string]string{}, note: &guardNote{}}
	for b.Loop() {
		if _, err := sg.openAIChunk(chunk); err != nil {
			b.Fatal(err)
		}
	}
}
