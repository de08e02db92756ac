package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter"
)

// testClock is a clock the router reads and the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

const (
	budgetKeyA    = "sk-budget-a-0123456789abcdef"
	budgetKeyTeam = "sk-budget-t-0123456789abcdef"
	budgetKeyMate = "sk-budget-m-0123456789abcdef"
)

func budgetConfig(url string) string {
	return oneTier(url, "") + `
[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "` + budgetKeyA + `"
id = "key-a"
user_id = "alice"
organization_id = "o"
scopes = ["read", "write"]
requests_per_day = 2

[[api_keys.api_keys]]
key = "` + budgetKeyTeam + `"
id = "key-team"
user_id = "bob"
organization_id = "o"
scopes = ["read", "write"]
tokens_per_day = 1000000
requests_per_day = 2
budget = "team"

[[api_keys.api_keys]]
key = "` + budgetKeyMate + `"
id = "key-mate"
user_id = "carol"
organization_id = "o"
scopes = ["read", "write"]
requests_per_day = 2
budget = "team"
`
}

// TestBudgets: past its day budget a key gets 429 budget_exceeded in its
// envelope, Retry-After to the next UTC midnight and X-Should-Retry:
// false; a shared budget is spent by every key that names it; the next
// UTC day passes again; /v1/usage shows the caller's budget.
func TestBudgets(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	clk := &testClock{t: time.Date(2026, 3, 2, 23, 59, 0, 0, time.UTC)}
	base := startRouter(t, budgetConfig(url), routerOpts{adminToken: usageAdmin, usage: tsrouter.UsageOptions{Now: clk.now}})
	chat := func(key string) *http.Response {
		return post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+key)
	}
	for i := range 2 {
		if resp := chat(budgetKeyA); resp.StatusCode != 200 {
			t.Fatalf("request %d within the budget: %d %s", i, resp.StatusCode, readAll(t, resp))
		}
	}
	t.Run("past the limit, each envelope", func(t *testing.T) {
		cases := []struct{ path, body, wantIn string }{
			{"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, `"code":"budget_exceeded"`},
			{"/v1/messages", `{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, `{"type":"error","error":{"type":"budget_exceeded"`},
			{"/v1/responses", `{"model":"chat","input":"hi"}`, `"type":"budget_exceeded"`},
		}
		for _, tc := range cases {
			resp := post(t, t.Context(), base+tc.path, tc.body, "Authorization", "Bearer "+budgetKeyA)
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, tc.wantIn) {
				t.Errorf("%s: %d %s, want 429 with %s", tc.path, resp.StatusCode, body, tc.wantIn)
			}
			if ra := resp.Header.Get("Retry-After"); ra != "60" {
				t.Errorf("%s: Retry-After %q, want 60 (to the next UTC midnight)", tc.path, ra)
			}
			if resp.Header.Get("X-Should-Retry") != "false" {
				t.Errorf("%s: X-Should-Retry %q", tc.path, resp.Header.Get("X-Should-Retry"))
			}
			if strings.Contains(body, budgetKeyA) {
				t.Error("key in the body")
			}
		}
	})
	t.Run("a shared budget", func(t *testing.T) {
		for i, key := range []string{budgetKeyTeam, budgetKeyMate} {
			if resp := chat(key); resp.StatusCode != 200 {
				t.Fatalf("team request %d: %d %s", i, resp.StatusCode, readAll(t, resp))
			}
		}
		for _, key := range []string{budgetKeyTeam, budgetKeyMate} {
			if resp := chat(key); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("third team request: %d %s, want 429", resp.StatusCode, readAll(t, resp))
			}
		}
	})
	t.Run("visible to the caller and the admin", func(t *testing.T) {
		var me myUsageView
		usageGetJSON(t, base+"/v1/usage", &me, "Authorization", "Bearer "+budgetKeyA)
		if me.Budget == nil || me.Budget.Name != "key:key-a" || me.Budget.RequestsUsed != 2 || me.Budget.RequestsLeft != 0 || me.Budget.RequestsPerDay != 2 ||
			me.Budget.ResetsAt != "2026-03-03T00:00:00Z" {
			t.Errorf("budget = %+v", me.Budget)
		}
		if len(me.Budgets) != 1 || me.Budgets[0] != *me.Budget {
			t.Errorf("budgets = %+v, want the one budget", me.Budgets)
		}
		st := adminStats(t, base)
		names := map[string]budgetView{}
		for _, b := range st.Budgets {
			names[b.Name] = b
		}
		if names["team"].RequestsUsed != 2 || names["key:key-a"].RequestsUsed != 2 {
			t.Errorf("admin budgets = %+v", st.Budgets)
		}
	})
	t.Run("the next UTC day passes", func(t *testing.T) {
		clk.set(time.Date(2026, 3, 3, 0, 0, 1, 0, time.UTC))
		for _, key := range []string{budgetKeyA, budgetKeyTeam} {
			if resp := chat(key); resp.StatusCode != 200 {
				t.Errorf("after midnight: %d %s", resp.StatusCode, readAll(t, resp))
			}
		}
	})
}

// TestMyUsageIsMine: /v1/usage shows the caller's own identity and
// counts, never another caller's, whatever the query says; in blocking
// mode it needs a key.
func TestMyUsageIsMine(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, budgetConfig(url), routerOpts{adminToken: usageAdmin})
	for range 2 {
		readAll(t, post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+budgetKeyTeam))
	}
	readAll(t, post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+budgetKeyA))
	waitRequests(t, base, 3)
	cases := []struct {
		name, key, query string
		wantID           string
		wantUser         string
		wantRequests     int64
	}{
		{"alice", budgetKeyA, "", "key-a", "alice", 1},
		{"bob", budgetKeyTeam, "", "key-team", "bob", 2},
		{"alice asking for bob", budgetKeyA, "?id=key-team&kind=key&user=bob", "key-a", "alice", 1},
		{"carol, who made none", budgetKeyMate, "", "key-mate", "carol", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := usageGet(t, base+"/v1/usage"+tc.query, "Authorization", "Bearer "+tc.key)
			body := readAll(t, resp)
			var me myUsageView
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &me) != nil {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if me.Identity.Kind != "key" || me.Identity.ID != tc.wantID || me.Identity.User != tc.wantUser ||
				me.Today.Requests != tc.wantRequests || me.Window.Requests != tc.wantRequests {
				t.Fatalf("usage = %+v, want %s with %d requests", me, tc.wantID, tc.wantRequests)
			}
			for _, other := range []string{"key-a", "key-team", "key-mate", "alice", "bob", "carol"} {
				if other != tc.wantID && other != tc.wantUser && strings.Contains(body, other) {
					t.Errorf("body names %q:\n%s", other, body)
				}
			}
			if strings.Contains(body, "sk-") {
				t.Error("a key secret in /v1/usage")
			}
		})
	}
	t.Run("blocking mode needs a key", func(t *testing.T) {
		resp := usageGet(t, base+"/v1/usage")
		if readAll(t, resp); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("no key: %d, want 401", resp.StatusCode)
		}
	})
}

// TestBudgetThroughAdminKeyAPI: a key created with requests_per_day
// through the admin API is held to it, the key store keeps the field, and
// an update lifts it.
func TestBudgetThroughAdminKeyAPI(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	store := filepath.Join(t.TempDir(), "keys.json")
	base := startRouter(t, budgetConfig(url), routerOpts{adminToken: usageAdmin, keyStore: store})
	call := func(method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	status, body := call("POST", "/admin/api-keys", `{"id":"bot","user_id":"u","organization_id":"o","scopes":["read","write"],"requests_per_day":1,"budget":"bots"}`, "X-Admin-Token", usageAdmin)
	var created struct {
		Key            string `json:"key"`
		RequestsPerDay int64  `json:"requests_per_day"`
		Budget         string `json:"budget"`
	}
	if status != 201 || json.Unmarshal([]byte(body), &created) != nil || created.RequestsPerDay != 1 || created.Budget != "bots" {
		t.Fatalf("create: %d %s", status, body)
	}
	chat := func() int {
		s, _ := call("POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer "+created.Key)
		return s
	}
	if s := chat(); s != 200 {
		t.Fatalf("first request: %d", s)
	}
	if s := chat(); s != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", s)
	}
	if b, err := os.ReadFile(store); err != nil || !strings.Contains(string(b), `"requests_per_day": 1`) && !strings.Contains(string(b), `"requests_per_day":1`) {
		t.Errorf("key store lacks the budget (%v):\n%s", err, b)
	}
	if s, b := call("PUT", "/admin/api-keys/bot", `{"requests_per_day":0}`, "X-Admin-Token", usageAdmin); s != 200 {
		t.Fatalf("update: %d %s", s, b)
	}
	if s := chat(); s != 200 {
		t.Fatalf("after lifting the budget: %d", s)
	}
	if s, b := call("PUT", "/admin/api-keys/bot", `{"requests_per_day":-1}`, "X-Admin-Token", usageAdmin); s != 400 {
		t.Errorf("negative budget: %d %s", s, b)
	}
}

// TestTokenBudgetWithoutTokenTracking: with [admin.stats] token_tracking
// off the statistics count requests only, yet a tokens_per_day budget
// still holds — streamed (the router asks the serve for usage) or not.
func TestTokenBudgetWithoutTokenTracking(t *testing.T) {
	const key = "sk-budget-tok-0123456789abcdef"
	fake, url := startFake(t, fakeserve.Options{})
	cfg := oneTier(url, "") + `
[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "` + key + `"
id = "key-tok"
user_id = "dora"
organization_id = "o"
scopes = ["read", "write"]
tokens_per_day = 1
`
	for _, stream := range []bool{false, true} {
		t.Run("stream="+strconv.FormatBool(stream), func(t *testing.T) {
			base := startRouter(t, cfg, routerOpts{adminToken: usageAdmin, usage: tsrouter.UsageOptions{NoTokenTracking: true}})
			body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":` + strconv.FormatBool(stream) + `}`
			if resp := post(t, t.Context(), base+"/v1/chat/completions", body, "Authorization", "Bearer "+key); resp.StatusCode != 200 {
				t.Fatalf("first request: %d %s", resp.StatusCode, readAll(t, resp))
			} else {
				readAll(t, resp)
			}
			// The serve's own count, not the router's estimate: a budgeted
			// stream asks for the usage chunk.
			if sent := string(fake.LastRequest().Body); stream && !strings.Contains(sent, `"include_usage":true`) {
				t.Errorf("a budgeted stream did not ask the serve for usage: %s", sent)
			}
			waitRequests(t, base, 1)
			resp := post(t, t.Context(), base+"/v1/chat/completions", body, "Authorization", "Bearer "+key)
			if b := readAll(t, resp); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(b, "budget_exceeded") {
				t.Errorf("past tokens_per_day: %d %s, want 429 budget_exceeded", resp.StatusCode, b)
			}
			if st := adminStats(t, base); st.Totals.InputTokens != 0 || st.Totals.OutputTokens != 0 {
				t.Errorf("token_tracking = false, yet the statistics count tokens: %+v", st.Totals)
			}
		})
	}
}
