package policy_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

func raw(s ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(s))
	for i, v := range s {
		out[i] = json.RawMessage(v)
	}
	return out
}

func TestAuthorize(t *testing.T) {
	user := func(grants ...string) *policy.Identity {
		return &policy.Identity{Node: "laptop", User: "alice@example.com", Grants: raw(grants...)}
	}
	tagged := func(login string, tags []string, grants ...string) *policy.Identity {
		return &policy.Identity{Node: "mini", User: login, Tags: tags, Grants: raw(grants...)}
	}
	tests := []struct {
		name       string
		rules      policy.TailnetRules
		id         *policy.Identity
		wantDeny   string // substring of the reason; "" = allowed
		may, mayNo []string
		admin      bool
		rpm        int
	}{
		{name: "no rules, no grant: the ACL is the gate", id: user(), may: []string{"anything"}},
		{name: "nil identity fails closed", id: nil, wantDeny: "no tailnet identity"},
		{name: "grant required and absent", rules: policy.TailnetRules{RequireGrant: true}, id: user(), wantDeny: "no grant"},
		{name: "grant restricts models", id: user(`{"models":["llm.*"]}`), may: []string{"llm.primary", "llm.fast"}, mayNo: []string{"chat", "llmx"}},
		{name: "grants are unioned", id: user(`{"models":["chat"],"rpm":60}`, `{"models":["llm.*"],"admin":true,"rpm":120}`),
			may: []string{"chat", "llm.fast"}, mayNo: []string{"embed"}, admin: true, rpm: 120},
		{name: "an unlimited grant makes the union unlimited", id: user(`{"models":["a"],"rpm":10}`, `{"models":["b"]}`), may: []string{"a", "b"}, rpm: 0},
		{name: "a grant without models grants none", id: user(`{"admin":true}`), mayNo: []string{"chat"}, admin: true},
		{name: "star grants all", id: user(`{"models":["*"]}`), may: []string{"chat", "qwen/qwen3-32b"}},
		{name: "patterns are case-insensitive", id: user(`{"models":["LLM.*"]}`), may: []string{"llm.primary"}},
		{name: "malformed grant denies", id: user(`{"models":["chat"]}`, `{"models":`), wantDeny: "malformed grant JSON"},
		{name: "unknown grant field denies", id: user(`{"model":["chat"]}`), wantDeny: "unknown field"},
		{name: "wrong type denies", id: user(`{"models":"chat"}`), wantDeny: "malformed"},
		{name: "negative rpm denies", id: user(`{"models":["a"],"rpm":-1}`), wantDeny: "rpm"},
		{name: "allowed tag passes (real control: tagged-devices)", rules: policy.TailnetRules{AllowTags: []string{"tag:mini"}},
			id: tagged(policy.TaggedDevices, []string{"tag:mini"}), may: []string{"chat"}},
		{name: "allowed tag passes (testcontrol: per-user login)", rules: policy.TailnetRules{AllowTags: []string{"tag:mini"}},
			id: tagged("bob@example.com", []string{"tag:mini"}), may: []string{"chat"}},
		{name: "other tag denied", rules: policy.TailnetRules{AllowTags: []string{"tag:mini"}}, id: tagged(policy.TaggedDevices, []string{"tag:ci"}), wantDeny: "not in allow_tags"},
		{name: "tagged node does not pass as its owner", rules: policy.TailnetRules{AllowUsers: []string{"bob@example.com"}},
			id: tagged("bob@example.com", []string{"tag:ci"}), wantDeny: "allow_tags"},
		{name: "allowed user passes", rules: policy.TailnetRules{AllowUsers: []string{"alice@example.com"}}, id: user(), may: []string{"chat"}},
		{name: "other user denied", rules: policy.TailnetRules{AllowUsers: []string{"carol@example.com"}}, id: user(), wantDeny: "not in allow_users"},
		{name: "tagged-devices is never a user", rules: policy.TailnetRules{AllowUsers: []string{policy.TaggedDevices}},
			id: &policy.Identity{User: policy.TaggedDevices}, wantDeny: "allow_users"},
		{name: "allow-list and grant both apply", rules: policy.TailnetRules{AllowTags: []string{"tag:mini"}, RequireGrant: true},
			id: tagged(policy.TaggedDevices, []string{"tag:mini"}, `{"models":["chat"]}`), may: []string{"chat"}, mayNo: []string{"llm.primary"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Authorize(tc.rules, tc.id)
			if tc.wantDeny != "" {
				var d *policy.Denial
				if !errors.As(err, &d) || !strings.Contains(d.Reason, tc.wantDeny) {
					t.Fatalf("got %v, %v; want a denial containing %q", p, err, tc.wantDeny)
				}
				return
			}
			if err != nil {
				t.Fatalf("denied: %v", err)
			}
			for _, m := range tc.may {
				if !p.MayUseModel(m) {
					t.Errorf("may not use %q, want allowed", m)
				}
			}
			for _, m := range tc.mayNo {
				if p.MayUseModel(m) {
					t.Errorf("may use %q, want denied", m)
				}
			}
			if p.Admin != tc.admin || p.RPM != tc.rpm {
				t.Errorf("admin=%v rpm=%d, want %v %d", p.Admin, p.RPM, tc.admin, tc.rpm)
			}
		})
	}
}

func FuzzParseGrant(f *testing.F) {
	f.Add([]byte(`{"models":["llm.*"],"admin":false,"rpm":60}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := policy.ParseGrant(b)
		if err != nil {
			return
		}
		p, err := policy.Authorize(policy.TailnetRules{}, &policy.Identity{Grants: []json.RawMessage{b}})
		if err != nil {
			t.Fatalf("parsed grant %q denied: %v", b, err)
		}
		if len(g.Models) == 0 && p.MayUseModel("chat") {
			t.Fatalf("grant without models allows a model: %q", b)
		}
	})
}
