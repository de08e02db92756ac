package tsrouter_test

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

const usageAdmin = "admin-0123456789abcdef"

type countersView struct {
	Requests          int64   `json:"requests"`
	Errors            int64   `json:"errors"`
	InputTokens       int64   `json:"input_tokens"`
	OutputTokens      int64   `json:"output_tokens"`
	CachedTokens      int64   `json:"cached_tokens"`
	ReasoningTokens   int64   `json:"reasoning_tokens"`
	EstimatedRequests int64   `json:"estimated_requests"`
	LatencyMSSum      float64 `json:"latency_ms_sum"`
	TTFTMSSum         float64 `json:"ttft_ms_sum"`
	Streamed          int64   `json:"streamed"`
	GuardrailBlocks   int64   `json:"guardrail_blocks"`
}

type adminStatsView struct {
	Uptime    float64      `json:"uptime_seconds"`
	Since     string       `json:"since"`
	Retention string       `json:"retention_window"`
	Totals    countersView `json:"totals"`
	ByModel   []struct {
		Model string `json:"model"`
		Tier  string `json:"tier"`
		countersView
	} `json:"by_model"`
	ByIdentity []struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		countersView
	} `json:"by_identity"`
	Budgets []budgetView `json:"budgets"`
}

type budgetView struct {
	Name           string `json:"name"`
	Window         string `json:"window"`
	ResetsAt       string `json:"resets_at"`
	TokensPerDay   int64  `json:"tokens_per_day"`
	TokensUsed     int64  `json:"tokens_used"`
	TokensLeft     int64  `json:"tokens_left"`
	RequestsPerDay int64  `json:"requests_per_day"`
	RequestsUsed   int64  `json:"requests_used"`
	RequestsLeft   int64  `json:"requests_left"`
}

type myUsageView struct {
	Identity struct {
		Kind  string   `json:"kind"`
		ID    string   `json:"id"`
		User  string   `json:"user"`
		Node  string   `json:"node"`
		Tags  []string `json:"tags"`
		KeyID string   `json:"key_id"`
	} `json:"identity"`
	Today     countersView `json:"today"`
	Window    countersView `json:"window"`
	Retention string       `json:"retention_window"`
	Series    []struct {
		T string `json:"t"`
		countersView
	} `json:"series"`
	Budget  *budgetView  `json:"budget"`
	Budgets []budgetView `json:"budgets"`
}

// getJSON GETs url with headers (name, value pairs) and decodes a 200.
func usageGetJSON(t *testing.T, url string, v any, hdr ...string) {
	t.Helper()
	resp := usageGet(t, url, hdr...)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

func usageGet(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func adminStats(t *testing.T, base string) adminStatsView {
	t.Helper()
	var st adminStatsView
	usageGetJSON(t, base+"/admin/stats", &st, "X-Admin-Token", usageAdmin)
	return st
}

// waitRequests waits until the router has counted n requests: a request
// is counted when its handler returns, which can be just after the
// caller has read the last byte.
func waitRequests(t *testing.T, base string, n int64, hdr ...string) {
	t.Helper()
	hdr = append([]string{"X-Admin-Token", usageAdmin}, hdr...)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st adminStatsView
		usageGetJSON(t, base+"/admin/stats", &st, hdr...)
		if st.Totals.Requests >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests counted, want %d", st.Totals.Requests, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUsageCountsEveryPath: every inference path and dialect is counted
// once, with the serve's tokens when it reports them (streams included,
// whether or not the caller asked for usage), the router's estimate
// marked as such otherwise, and a stream that breaks as an error with the
// tokens seen.
func TestUsageCountsEveryPath(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	cases := []struct {
		name, path, body string
		mode             fakeserve.Mode
		want             countersView
		model            string
	}{
		{name: "chat", path: "/v1/chat/completions", body: `{"model":"chat","messages":[{"role":"user","content":"hello there"}]}`,
			want: countersView{Requests: 1}, model: "chat"},
		{name: "chat stream with usage asked", path: "/v1/chat/completions", body: `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			want: countersView{Requests: 1, Streamed: 1}, model: "chat"},
		{name: "chat stream without usage asked", path: "/v1/chat/completions", body: `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			want: countersView{Requests: 1, Streamed: 1}, model: "chat"},
		{name: "completions", path: "/v1/completions", body: `{"model":"chat","prompt":"once upon"}`,
			want: countersView{Requests: 1}, model: "chat"},
		{name: "messages translated", path: "/v1/messages", body: `{"model":"chat","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`,
			want: countersView{Requests: 1}, model: "chat"},
		{name: "messages stream translated", path: "/v1/messages", body: `{"model":"chat","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			want: countersView{Requests: 1, Streamed: 1}, model: "chat"},
		{name: "responses", path: "/v1/responses", body: `{"model":"chat","input":"hi"}`,
			want: countersView{Requests: 1}, model: "chat"},
		{name: "responses stream", path: "/v1/responses", body: `{"model":"chat","input":"hi","stream":true}`,
			want: countersView{Requests: 1, Streamed: 1}, model: "chat"},
		{name: "embeddings", path: "/v1/embeddings", body: `{"model":"Qwen/Qwen3-Embedding-0.6B","input":"x"}`,
			want: countersView{Requests: 1}, model: "embedding"},
		{name: "rerank", path: "/v1/rerank", body: `{"model":"BAAI/bge-reranker-v2-m3","query":"q","documents":["a","b"]}`,
			want: countersView{Requests: 1}, model: "rerank"},
		{name: "stream that breaks", path: "/v1/chat/completions", body: `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			mode: fakeserve.ModeCut, want: countersView{Requests: 1, Errors: 1, Streamed: 1}, model: "chat"},
		{name: "serve error", path: "/v1/chat/completions", body: `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
			mode: fakeserve.ModeStatus500, want: countersView{Requests: 1, Errors: 1}, model: "chat"},
		{name: "unknown alias counts as other", path: "/v1/chat/completions", body: `{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`,
			want: countersView{Requests: 1, Errors: 1}, model: usage.Other},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := startRouter(t, purposeConfig(url), routerOpts{adminToken: usageAdmin})
			fake.SetMode(cmpMode(tc.mode))
			defer fake.SetMode(fakeserve.ModeOK)
			resp := post(t, t.Context(), base+tc.path, tc.body)
			body := readAll(t, resp)
			fake.SetMode(fakeserve.ModeOK)
			waitRequests(t, base, 1)
			st := adminStats(t, base)
			got := st.Totals
			if got.Requests != tc.want.Requests || got.Errors != tc.want.Errors || got.Streamed != tc.want.Streamed {
				t.Fatalf("totals = %+v, want requests/errors/streamed %+v (status %d %.200s)", got, tc.want, resp.StatusCode, body)
			}
			if tc.model != usage.Other && tc.want.Errors == 0 && got.InputTokens == 0 {
				t.Errorf("no input tokens counted: %+v", got)
			}
			if tc.want.Errors == 0 && tc.model == "chat" && got.OutputTokens == 0 {
				t.Errorf("no output tokens counted: %+v", got)
			}
			if tc.mode == fakeserve.ModeCut && (got.OutputTokens == 0 || got.InputTokens == 0 || got.EstimatedRequests != 1) {
				t.Errorf("a broken stream counts the tokens seen, estimated: %+v", got)
			}
			if tc.want.Streamed == 1 && got.TTFTMSSum <= 0 {
				t.Errorf("stream without a time to first token: %+v", got)
			}
			if got.LatencyMSSum <= 0 {
				t.Errorf("no latency: %+v", got)
			}
			found := false
			for _, m := range st.ByModel {
				if m.Model == tc.model && m.Requests == 1 {
					found = true
				}
			}
			if !found {
				t.Errorf("by_model has no request for %q: %+v", tc.model, st.ByModel)
			}
			if len(st.ByIdentity) != 1 || st.ByIdentity[0].Kind != "anonymous" {
				t.Errorf("by_identity = %+v, want the anonymous dev caller", st.ByIdentity)
			}
		})
	}
}

func cmpMode(m fakeserve.Mode) fakeserve.Mode {
	if m == "" {
		return fakeserve.ModeOK
	}
	return m
}

// TestUsageTokensFromTheServe: the serve's reported usage is what is
// counted, not marked estimated; streamed or not.
func TestUsageTokensFromTheServe(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	for _, stream := range []string{"false", "true"} {
		t.Run("stream="+stream, func(t *testing.T) {
			base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin})
			body := `{"model":"chat","stream":` + stream + `,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}`
			if stream == "false" {
				body = `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`
			}
			resp := post(t, t.Context(), base+"/v1/chat/completions", body)
			readAll(t, resp)
			waitRequests(t, base, 1)
			st := adminStats(t, base)
			if st.Totals.EstimatedRequests != 0 || st.Totals.OutputTokens == 0 {
				t.Fatalf("totals = %+v, want the serve's usage, not an estimate", st.Totals)
			}
		})
	}
}

// TestUsageSeriesAndCSV: /admin/stats/usage answers series by group and
// bucket; its CSV parses with the contract's header; bad queries are 400.
func TestUsageSeriesAndCSV(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin})
	for range 3 {
		readAll(t, post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`))
	}
	waitRequests(t, base, 3)
	var v struct {
		GroupBy, Bucket, From, To string
		Series                    []struct {
			Group  string
			Points []struct {
				T string
				countersView
			}
		}
	}
	usageGetJSON(t, base+"/admin/stats/usage?group_by=model&bucket=1m&id=chat", &v, "X-Admin-Token", usageAdmin)
	if v.Bucket != "1m" || len(v.Series) != 1 || v.Series[0].Group != "chat" {
		t.Fatalf("usage = %+v", v)
	}
	var sum int64
	for _, p := range v.Series[0].Points {
		sum += p.Requests
	}
	if sum != 3 {
		t.Errorf("points sum to %d requests, want 3", sum)
	}
	usageGetJSON(t, base+"/admin/stats/usage?group_by=anonymous", &v, "X-Admin-Token", usageAdmin)
	if v.Bucket != "1h" || len(v.Series) != 1 {
		t.Errorf("default bucket over 24h = %q, series %d", v.Bucket, len(v.Series))
	}

	for _, how := range [][]string{{"?group_by=model&format=csv"}, {"?group_by=model", "Accept", "text/csv"}} {
		resp := usageGet(t, base+"/admin/stats/usage"+how[0], append([]string{"X-Admin-Token", usageAdmin}, how[1:]...)...)
		body := readAll(t, resp)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Fatalf("%v: content type %q", how, ct)
		}
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("%v: csv: %v", how, err)
		}
		if got := strings.Join(rows[0], ","); got != "group,t,requests,errors,input_tokens,output_tokens,cached_tokens,reasoning_tokens,estimated_requests,latency_ms_sum,ttft_ms_sum,guardrail_blocks" {
			t.Errorf("header = %s", got)
		}
		var n int64
		for _, r := range rows[1:] {
			if r[0] == "chat" {
				x, _ := strconv.ParseInt(r[2], 10, 64)
				n += x
			}
		}
		if n != 3 {
			t.Errorf("%v: csv rows sum to %d chat requests, want 3", how, n)
		}
	}

	for _, q := range []string{"group_by=planet", "bucket=2m", "from=yesterday", "from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", "colour=red"} {
		resp := usageGet(t, base+"/admin/stats/usage?"+q, "X-Admin-Token", usageAdmin)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"invalid_request"`) {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, resp.StatusCode, body)
		}
	}
	resp := usageGet(t, base+"/admin/stats")
	if readAll(t, resp); resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/admin/stats without the admin credential: %d", resp.StatusCode)
	}
}

// TestUsageReset: POST /admin/stats/reset empties the counts, and the
// audit line says who did it.
func TestUsageReset(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	logs := &syncBuffer{}
	srv := httptest.NewServer(newHandler(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin}, slog.New(slog.NewJSONHandler(logs, nil))))
	t.Cleanup(srv.Close)
	base := srv.URL
	readAll(t, post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`))
	waitRequests(t, base, 1)
	if st := adminStats(t, base); st.Totals.Requests != 1 {
		t.Fatalf("before reset: %+v", st.Totals)
	}
	resp := post(t, t.Context(), base+"/admin/stats/reset", "", "X-Admin-Token", usageAdmin)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"reset":true`) {
		t.Fatalf("reset: %d %s", resp.StatusCode, body)
	}
	if st := adminStats(t, base); st.Totals.Requests != 0 || len(st.ByIdentity) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
	var audit string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"path":"/admin/stats/reset"`) {
			audit = line
		}
	}
	if !strings.Contains(audit, `"detail":"usage statistics reset"`) || !strings.Contains(audit, `"remote":"127.0.0.1:`) {
		t.Errorf("reset audit line = %s", audit)
	}
	if strings.Contains(logs.String(), usageAdmin) {
		t.Error("the admin token is in the logs")
	}
}

// TestUsageDisabled: [admin.stats] enabled = false removes the views.
func TestUsageDisabled(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin, usage: tsrouter.UsageOptions{Disabled: true}})
	for _, p := range []string{"/admin/stats", "/v1/usage"} {
		resp := usageGet(t, base+p, "X-Admin-Token", usageAdmin)
		if readAll(t, resp); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s with stats disabled: %d, want 404", p, resp.StatusCode)
		}
	}
}

var _ = time.Second

// TestUsageAskedOfTheServe: a stream whose caller did not ask for usage
// is sent to the serve with stream_options.include_usage, its usage chunk
// is counted and not relayed: the caller's stream is the one it asked
// for. A caller that asked gets the chunk.
func TestUsageAskedOfTheServe(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	cases := []struct {
		name, path, body string
		callerGetsUsage  bool
	}{
		{"chat, not asked", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"chat, asked", "/v1/chat/completions", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true},
		{"completions, not asked", "/v1/completions", `{"model":"chat","stream":true,"prompt":"once"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin})
			resp := post(t, t.Context(), base+tc.path, tc.body)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || !strings.HasSuffix(body, "data: [DONE]\n\n") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := strings.Contains(body, `"usage":{`); got != tc.callerGetsUsage {
				t.Errorf("caller got a usage chunk: %v, want %v\n%s", got, tc.callerGetsUsage, body)
			}
			if sent := string(fake.LastRequest().Body); !strings.Contains(sent, `"include_usage":true`) {
				t.Errorf("serve not asked for usage: %s", sent)
			}
			waitRequests(t, base, 1)
			st := adminStats(t, base)
			if st.Totals.EstimatedRequests != 0 || st.Totals.OutputTokens == 0 || st.Totals.InputTokens == 0 {
				t.Errorf("totals = %+v, want the serve's usage", st.Totals)
			}
		})
	}
	t.Run("token tracking off: nothing asked", func(t *testing.T) {
		base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin, usage: tsrouter.UsageOptions{NoTokenTracking: true}})
		readAll(t, post(t, t.Context(), base+"/v1/chat/completions", cases[0].body))
		if sent := string(fake.LastRequest().Body); strings.Contains(sent, "include_usage") {
			t.Errorf("serve asked for usage with token tracking off: %s", sent)
		}
		waitRequests(t, base, 1)
		if st := adminStats(t, base); st.Totals.Requests != 1 || st.Totals.InputTokens+st.Totals.OutputTokens != 0 {
			t.Errorf("totals = %+v, want the request without tokens", st.Totals)
		}
	})
}

// TestUsageCountsAudio: transcriptions and speech are counted under stt
// and tts, by the caller's identity.
func TestUsageCountsAudio(t *testing.T) {
	f := startAudioFakes(t)
	opts := audioRouterOpts()
	opts.adminToken = usageAdmin
	base := startRouter(t, audioTOML(f, audioSetup{}), opts)
	wav := base64.StdEncoding.EncodeToString(testWAV(audioRamp(800), 16000))
	if status, _, body := audioPost(t, base+"/v1/audio/transcriptions", audioJSON(t, map[string]any{"audio_b64": wav, "format": "wav", "is_final": true})); status != 200 {
		t.Fatalf("stt: %d %s", status, body)
	}
	if status, _, body := audioPost(t, base+"/v1/audio/speech", audioJSON(t, map[string]any{"input": "hello", "response_format": "pcm16"})); status != 200 {
		t.Fatalf("tts: %d %s", status, body)
	}
	waitRequests(t, base, 2, "Authorization", "Bearer "+audioToken)
	var st adminStatsView
	usageGetJSON(t, base+"/admin/stats", &st, "X-Admin-Token", usageAdmin, "Authorization", "Bearer "+audioToken)
	got := map[string]int64{}
	for _, m := range st.ByModel {
		got[m.Model] = m.Requests
	}
	if got["stt"] != 1 || got["tts"] != 1 || st.Totals.Requests != 2 {
		t.Fatalf("by_model = %v, totals %+v", got, st.Totals)
	}
}

// TestRetentionWindowIsWrittenAsConfigured: retention_window reads back
// in the seed's duration format.
func TestRetentionWindowIsWrittenAsConfigured(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{24 * time.Hour, "24h"}, {7 * 24 * time.Hour, "7d"}, {90 * time.Minute, "90m"}, {30 * time.Second, "30s"}, {36 * time.Hour, "36h"}} {
		base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: usageAdmin, usage: tsrouter.UsageOptions{Store: usage.New(usage.Options{Retention: tc.d})}})
		if got := adminStats(t, base).Retention; got != tc.want {
			t.Errorf("%v: retention_window %q, want %q", tc.d, got, tc.want)
		}
	}
}

// A request a guardrail refuses is counted, as an error and as a
// guardrail block, against the caller who sent it.
func TestUsageCountsGuardrailBlocks(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{APIKey: tierKey})
	cfg := oneTier(url, "") + guardPII
	base := startRouter(t, cfg, routerOpts{adminToken: usageAdmin, env: map[string]string{"SERVE_A_KEY": tierKey}})
	for _, prompt := range []string{"hello", "my ssn is 123-45-6789"} {
		resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"`+prompt+`"}]}`)
		readAll(t, resp)
	}
	waitRequests(t, base, 2)
	st := adminStats(t, base)
	if st.Totals.GuardrailBlocks != 1 || st.Totals.Errors != 1 {
		t.Errorf("totals = %+v, want 1 guardrail block and 1 error", st.Totals)
	}
}

// A group name a spreadsheet would read as a formula is written as text.
func TestUsageCSVCellsAreNotFormulas(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com": "alice@example.com",
		"=HYPERLINK(1)":     "'=HYPERLINK(1)",
		"+1":                "'+1",
		"-2":                "'-2",
		"@SUM(A1)":          "'@SUM(A1)",
		"\tx":               "'\tx",
		"":                  "",
	} {
		if got := tsrouter.CSVCell(in); got != want {
			t.Errorf("CSVCell(%q) = %q, want %q", in, got, want)
		}
	}
}
