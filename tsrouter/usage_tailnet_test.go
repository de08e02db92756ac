package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter/usage"
	"tailscale.com/tailcfg"
)

// TestTailnetUsageByIdentity: over a real tailnet, two tagged nodes and
// two users' nodes are counted apart — per user, node and tag — each sees
// only its own /v1/usage, and a grant's requests_per_day is each
// identity's own day budget.
func TestTailnetUsageByIdentity(t *testing.T) {
	tn := newTestTailnet(t)
	_, url := startFake(t, fakeserve.Options{})
	tn.control.SetGlobalAppCaps(tailcfg.PeerCapMap{testCap: {tailcfg.RawMessage(`{"models":["*"],"requests_per_day":3}`)}})
	r := tn.routerHandler(t, routerConfig(url, ""), "")
	mini := tn.client(t, "mini", "tag:mini")
	ci := tn.client(t, "ci", "tag:ci")
	laptop := tn.client(t, "laptop")
	desktop := tn.client(t, "desktop")

	callers := []struct {
		name   string
		chats  int
		kind   string
		id     string // "" = a user login (testcontrol's user-N@…)
		node   string
		errors int64
	}{
		{name: "mini", chats: 2, kind: "node", id: "mini", node: "mini"},
		{name: "ci", chats: 1, kind: "node", id: "ci", node: "ci"},
		{name: "laptop", chats: 1, kind: "user", node: "laptop"},
		{name: "desktop", chats: 4, kind: "user", node: "desktop", errors: 1},
	}
	clients := map[string]*http.Client{"mini": mini, "ci": ci, "laptop": laptop, "desktop": desktop}
	for _, c := range callers {
		for i := range c.chats {
			status, body := chatVia(t, clients[c.name], "chat", i%2 == 1)
			want := 200
			if int64(c.chats-i) <= c.errors {
				want = 429
			}
			if status != want || (want == 429 && !strings.Contains(body, "budget_exceeded")) {
				t.Fatalf("%s chat %d: %d %s, want %d", c.name, i, status, body, want)
			}
		}
	}
	// A request is counted when its handler returns, which can be just
	// after the caller has its last byte.
	for deadline := time.Now().Add(5 * time.Second); r.h.Usage().Total(time.Now().Add(-time.Hour)).Requests < 8; {
		if time.Now().After(deadline) {
			t.Fatal("the requests were never all counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	logins := map[string]string{}
	for _, c := range callers {
		status, body := get(t, clients[c.name], "http://anvil/v1/usage")
		var me myUsageView
		if status != 200 || json.Unmarshal([]byte(body), &me) != nil {
			t.Fatalf("%s /v1/usage: %d %s", c.name, status, body)
		}
		if me.Identity.Kind != c.kind || me.Identity.Node != c.node || (c.id != "" && me.Identity.ID != c.id) ||
			me.Today.Requests != int64(c.chats) || me.Today.Errors != c.errors {
			t.Errorf("%s: usage %+v, want kind %s, %d requests, %d errors", c.name, me, c.kind, c.chats, c.errors)
		}
		if c.kind == "user" {
			logins[c.name] = me.Identity.ID
		}
		for _, other := range callers {
			if other.name != c.name && strings.Contains(body, `"`+other.node+`"`) {
				t.Errorf("%s's /v1/usage names %s:\n%s", c.name, other.node, body)
			}
		}
		if me.Budget == nil || me.Budget.RequestsPerDay != 3 || me.Budget.RequestsUsed != int64(c.chats)-c.errors {
			t.Errorf("%s: budget %+v", c.name, me.Budget)
		}
	}
	if logins["laptop"] == "" || logins["laptop"] == logins["desktop"] {
		t.Fatalf("user logins %v: want two users", logins)
	}
	if strings.Contains(logins["laptop"], "desktop") {
		t.Fatal("confused users")
	}
	st := r.h.Usage()
	from := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		kind  usage.Kind
		group string
		want  int64
	}{
		{usage.KindNode, "mini", 2}, {usage.KindNode, "ci", 1}, {usage.KindNode, "laptop", 1}, {usage.KindNode, "desktop", 4},
		{usage.KindTag, "tag:mini", 2}, {usage.KindTag, "tag:ci", 1},
		{usage.KindUser, logins["laptop"], 1}, {usage.KindUser, logins["desktop"], 4},
	} {
		if got, _ := st.Sum(tc.kind, tc.group, from); got.Requests != tc.want {
			t.Errorf("%v %s: %d requests, want %d", tc.kind, tc.group, got.Requests, tc.want)
		}
	}
	// Tagged nodes are not counted under their (testcontrol) user.
	if n := len(st.Groups(usage.KindUser)); n != 2 {
		t.Errorf("user groups %v, want the two untagged nodes' users", st.Groups(usage.KindUser))
	}
}
