package usage_test

import (
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// FuzzSnapshot: no snapshot bytes make Load panic, and a snapshot that
// loads saves again to one that loads.
func FuzzSnapshot(f *testing.F) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	s.Record(s.Handle(&usage.Identity{User: "a", Node: "n", Tags: []string{"tag:x"}, Key: "k"}), &usage.Sample{Alias: "chat", InputTokens: 5, Budgets: []string{"team"}})
	good, _ := s.MarshalBinary()
	f.Add(good)
	f.Add([]byte("ANVIL-USAGE\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newStore(c, 24*time.Hour, "chat")
		if err := r.UnmarshalBinary(b, 0); err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := newStore(c, 24*time.Hour, "chat").UnmarshalBinary(again, 0); err != nil {
			t.Fatalf("a restored snapshot saves to one that does not load: %v", err)
		}
	})
}
