package policy_test

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

// TestInFlightCaps: a node's cap is its grants' most generous
// max_concurrency, else the router's share; a key's is its own, else the
// share; callers without a tailnet identity have only the key's.
func TestInFlightCaps(t *testing.T) {
	grants := func(vs ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, v := range vs {
			out = append(out, json.RawMessage(v))
		}
		return out
	}
	id := func(g ...string) *policy.Identity {
		return &policy.Identity{Node: "mini", IP: netip.MustParseAddr("100.64.0.2"), Grants: grants(g...)}
	}
	tests := []struct {
		name     string
		identity *policy.Identity
		key      *policy.APIKey
		want     [2]policy.InFlightCap
	}{
		{"node without grants: the share", id(), nil, [2]policy.InFlightCap{{Bucket: "node:mini", Max: 8}}},
		{"grant sets it", id(`{"models":["*"],"max_concurrency":3}`), nil, [2]policy.InFlightCap{{Bucket: "node:mini", Max: 3}}},
		{"the most generous grant wins", id(`{"models":["a"],"max_concurrency":3}`, `{"models":["b"],"max_concurrency":20}`), nil, [2]policy.InFlightCap{{Bucket: "node:mini", Max: 20}}},
		{"key sets its own", id(), &policy.APIKey{ID: "k1", MaxConcurrency: 2}, [2]policy.InFlightCap{{Bucket: "node:mini", Max: 8}, {Bucket: "key:k1", Max: 2}}},
		{"loopback caller with a key", nil, &policy.APIKey{ID: "k2"}, [2]policy.InFlightCap{{}, {Bucket: "key:k2", Max: 8}}},
		{"loopback caller without a key", nil, nil, [2]policy.InFlightCap{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy.Unrestricted()
			if tc.identity != nil {
				var err error
				if p, err = policy.Authorize(policy.TailnetRules{}, tc.identity); err != nil {
					t.Fatal(err)
				}
			}
			p.Key = tc.key
			if got := p.InFlightCaps(8); got != tc.want {
				t.Errorf("caps %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := policy.ParseGrant(json.RawMessage(`{"max_concurrency":-1}`)); err == nil {
		t.Error("a negative max_concurrency grant was accepted")
	}
}

// TestInFlightAcquire: a place in every bucket or in none; released places
// come back.
func TestInFlightAcquire(t *testing.T) {
	f := policy.NewInFlight()
	node := policy.InFlightCap{Bucket: "node:a", Max: 2}
	key := policy.InFlightCap{Bucket: "key:k", Max: 1}
	r1, ok := f.Acquire([]policy.InFlightCap{node, key})
	if !ok {
		t.Fatal("first request refused")
	}
	if _, ok := f.Acquire([]policy.InFlightCap{node, key}); ok {
		t.Fatal("the key's second request was admitted past max 1")
	}
	r2, ok := f.Acquire([]policy.InFlightCap{node})
	if !ok {
		t.Fatal("the refused request took the node's place anyway")
	}
	if _, ok := f.Acquire([]policy.InFlightCap{node}); ok {
		t.Fatal("the node's third request was admitted past max 2")
	}
	r1()
	r2()
	if _, ok := f.Acquire([]policy.InFlightCap{node, key}); !ok {
		t.Fatal("released places did not come back")
	}
}
