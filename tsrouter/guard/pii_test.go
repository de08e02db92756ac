package guard_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// The scanners' true and false positives. want is the entity types found,
// in order, with the exact matched text.
func TestPIIScanners(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string // "type=matched"
	}{
		{"email", "write to alice.smith+x@mail.example.com today", []string{"email=alice.smith+x@mail.example.com"}},
		{"email at sentence end", "Mail bob@example.org.", []string{"email=bob@example.org"}},
		{"email inside a URL is still an email", "see https://x.example/?to=carol@example.net&y=1", []string{"email=carol@example.net"}},
		{"userinfo of a URL", "https://dave@host.example.com/path", []string{"email=dave@host.example.com"}},
		{"no domain dot", "user@localhost is not an address", nil},
		{"decorator", "@Override and foo@bar", nil},
		{"numeric tld", "a@b.c1", nil},
		{"phone us dashes", "call 555-123-4567 now", []string{"phone=555-123-4567"}},
		{"phone parens", "call (555) 123-4567", []string{"phone=(555) 123-4567"}},
		{"phone +1", "call +1 555 123 4567", []string{"phone=+1 555 123 4567"}},
		{"phone international", "ring +44 20 7946 0958", []string{"phone=+44 20 7946 0958"}},
		{"bare ten digits are an id", "order 5551234567 shipped", nil},
		{"version numbers", "go 1.22.3 and 10.0.0.1", nil},
		{"ssn", "ssn 123-45-6789.", []string{"ssn=123-45-6789"}},
		{"ssn never issued area", "ssn 666-45-6789 or 000-12-3456 or 912-34-5678", nil},
		{"ssn inside a word", "ref A123-45-6789", nil},
		{"card visa", "card 4111 1111 1111 1111 exp", []string{"credit_card=4111 1111 1111 1111"}},
		{"card dashes", "card 5500-0000-0000-0004", []string{"credit_card=5500-0000-0000-0004"}},
		{"card plain amex", "amex 378282246310005", []string{"credit_card=378282246310005"}},
		{"luhn invalid is not a card", "card 4111 1111 1111 1112", nil},
		{"mixed separators", "4111 1111-1111 1111", nil},
		{"too many digits", "id 41111111111111111111111", nil},
		{"aws key", "key=AKIAIOSFODNN7EXAMPLE;", []string{"aws_access_key=AKIAIOSFODNN7EXAMPLE"}},
		{"aws key too short", "AKIAIOSFODNN7EXAMPL", nil},
		{"aws prefix in a word", "XAKIAIOSFODNN7EXAMPLE", nil},
		{"sk key", "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx done", []string{"api_key=sk-proj-abcdefghijklmnopqrstuvwx"}},
		{"anthropic key", "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA", []string{"api_key=sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA"}},
		{"sk short", "risk-free and sk-short", nil},
		{"bearer", "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", []string{"api_key=eyJhbGciOiJIUzI1NiJ9.abc.def"}},
		{"bearer word", "the bearer of bad news", nil},
		{"pem", "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIB\nabc\n-----END RSA PRIVATE KEY-----\ny", []string{"private_key=-----BEGIN RSA PRIVATE KEY-----\nMIIB\nabc\n-----END RSA PRIVATE KEY-----"}},
		{"pem unterminated runs to the end", "-----BEGIN PRIVATE KEY-----\nMIIB", []string{"private_key=-----BEGIN PRIVATE KEY-----\nMIIB"}},
		{"public key is not secret", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", nil},
		{"markdown rule", "-----\n--- a ---", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, sp := range guard.ScanPII(tc.text) {
				got = append(got, sp.Type+"="+tc.text[sp.Start:sp.End])
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func newEngine(t testing.TB, mode string, providers ...guard.ProviderConfig) *guard.Engine {
	t.Helper()
	for i := range providers {
		p := &providers[i]
		p.Enabled, p.OnError = true, guard.FailOpen
		if !p.Input && !p.Output {
			p.Input, p.Output = true, true
		}
	}
	e, err := guard.New(guard.Config{Enabled: true, Mode: mode, OutputCheck: "window", OutputWindow: 512, MaxHold: 4096, Providers: providers}, guard.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func piiProvider(opts map[string]any) guard.ProviderConfig {
	return guard.ProviderConfig{Name: "pii-redaction", Type: "pii", Options: opts}
}

func TestPIIActions(t *testing.T) {
	text := "mail alice@example.com, ssn 123-45-6789"
	cases := []struct {
		name     string
		opts     map[string]any
		action   guard.Action
		text     string
		entities map[string]int
	}{
		{"mask by default", nil, guard.Transform, "mail <REDACTED:EMAIL>, ssn <REDACTED:SSN>", map[string]int{"email": 1, "ssn": 1}},
		{"block wins over mask", map[string]any{"actions": map[string]any{"ssn": "block"}}, guard.Block, "", map[string]int{"email": 1, "ssn": 1}},
		{"allow ignores", map[string]any{"actions": map[string]any{"ssn": "allow"}, "placeholder_format": "[{TYPE}]"}, guard.Transform, "mail [EMAIL], ssn 123-45-6789", map[string]int{"email": 1}},
		{"default allow", map[string]any{"default_action": "allow"}, guard.Allow, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, "enforce", piiProvider(tc.opts))
			res, err := e.Check(t.Context(), guard.Input, &guard.Content{Stage: guard.Input, Texts: []guard.Text{{Role: "user", Text: text}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tc.action {
				t.Fatalf("action %v, want %v", res.Action, tc.action)
			}
			if tc.text != "" && (len(res.Texts) != 1 || res.Texts[0] != tc.text) {
				t.Errorf("texts %q, want %q", res.Texts, tc.text)
			}
			if len(res.Entities) != len(tc.entities) {
				t.Errorf("entities %v, want %v", res.Entities, tc.entities)
			}
			for k, n := range tc.entities {
				if res.Entities[k] != n {
					t.Errorf("entities %v, want %v", res.Entities, tc.entities)
				}
			}
			if tc.action == guard.Block && (res.Provider != "pii-redaction" || res.Category != "pii") {
				t.Errorf("block by %q category %q", res.Provider, res.Category)
			}
		})
	}
}

func TestRulesProvider(t *testing.T) {
	rules := guard.ProviderConfig{Name: "house-rules", Type: "rules", Options: map[string]any{"rules": []any{
		map[string]any{"name": "nightingale", "keywords": []any{"Project Nightingale"}, "action": "block", "category": "confidential"},
		map[string]any{"name": "employee_id", "pattern": `EMP-\d{6}`, "case_sensitive": true, "action": "mask"},
		map[string]any{"name": "test-ids", "pattern": `EMP-000000`, "case_sensitive": true, "action": "allow"},
		map[string]any{"name": "rude", "keywords": []any{"darn"}, "action": "flag", "category": "profanity"},
	}}}
	cases := []struct {
		name, text string
		action     guard.Action
		out        string
		category   string
	}{
		{"block keyword any case", "what is project NIGHTINGALE about?", guard.Block, "", "confidential"},
		{"keyword is a whole word", "nightingales sing; projectnightingale", guard.Allow, "", ""},
		{"mask ids", "ask EMP-123456 or EMP-654321", guard.Transform, "ask <REDACTED:EMPLOYEE_ID> or <REDACTED:EMPLOYEE_ID>", ""},
		{"case sensitive", "emp-123456", guard.Allow, "", ""},
		{"allow rule exempts", "test user EMP-000000", guard.Allow, "", ""},
		{"flag", "darn it", guard.Flag, "", "profanity"},
	}
	e := newEngine(t, "enforce", rules)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.Check(t.Context(), guard.Input, &guard.Content{Stage: guard.Input, Texts: []guard.Text{{Role: "user", Text: tc.text}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tc.action || res.Category != tc.category {
				t.Fatalf("got %v %q, want %v %q", res.Action, res.Category, tc.action, tc.category)
			}
			if tc.out != "" && res.Texts[0] != tc.out {
				t.Errorf("got %q, want %q", res.Texts[0], tc.out)
			}
		})
	}
}

func TestMonitorModeChangesNothing(t *testing.T) {
	e := newEngine(t, "monitor", piiProvider(map[string]any{"actions": map[string]any{"ssn": "block"}}))
	res, _ := e.Check(t.Context(), guard.Input, &guard.Content{Texts: []guard.Text{{Text: "ssn 123-45-6789"}}}, nil)
	if res.Blocked() || res.Rewritten() || res.Action != guard.Block || res.Entities["ssn"] != 1 {
		t.Errorf("monitor: %+v", res)
	}
	if c := e.Counts(); len(c) != 1 || c[0].Verdict != "block" || c[0].N != 1 {
		t.Errorf("counts %+v", c)
	}
}

// On a stream, monitor mode releases each delta as it comes — no tail
// held back, nothing masked — and still records what enforce would do.
func TestMonitorModeStreamHoldsNothing(t *testing.T) {
	e := newEngine(t, "monitor", piiProvider(map[string]any{"actions": map[string]any{"ssn": "block"}}))
	g := e.NewGate(nil, "m", nil)
	for _, delta := range []string{"Contact ali", "ce@exam", "ple.com, ssn 123-45-", "6789", " and bob"} {
		out, err := g.Feed(t.Context(), delta)
		if err != nil || out != delta {
			t.Fatalf("Feed(%q) = %q, %v: monitor mode must release the delta as it came", delta, out, err)
		}
	}
	if out, err := g.Flush(t.Context()); out != "" || err != nil {
		t.Fatalf("Flush = %q, %v: everything was already released", out, err)
	}
	if res := g.Result(); res.Action != guard.Block || res.Blocked() || res.Entities["email"] != 1 || res.Entities["ssn"] != 1 {
		t.Errorf("monitor verdict %+v, want the block recorded, not enforced, and both entities counted", res)
	}
}

func TestOnRequestProviders(t *testing.T) {
	strict := piiProvider(nil)
	strict.Name, strict.Apply = "strict-pii", guard.ApplyOnRequest
	e := newEngine(t, "enforce", strict)
	c := &guard.Content{Texts: []guard.Text{{Text: "bob@example.com"}}}
	if res, _ := e.Check(t.Context(), guard.Input, c, nil); res.Action != guard.Allow {
		t.Errorf("applied to a caller that did not ask: %v", res.Action)
	}
	if res, _ := e.Check(t.Context(), guard.Input, c, []string{"strict-pii"}); res.Action != guard.Transform {
		t.Errorf("not applied to a caller whose grant names it: %v", res.Action)
	}
}

// The streamed answers of the property test: secrets of every kind, at
// the start, middle and end.
var streamSamples = []string{
	"Sure! Email alice@example.com or call 555-123-4567.",
	"alice@example.com",
	"Your card 4111 1111 1111 1111 was charged; ssn 123-45-6789",
	"key AKIAIOSFODNN7EXAMPLE and sk-proj-abcdefghijklmnopqrstuvwx and Bearer abcdefghijklmnopqrstu",
	"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\nDone, EMP-123456 NIGHTINGALE",
	"a.b@c.de, +44 20 7946 0958 (555) 123-4567 4111111111111111 end",
	"no secrets here, only version 1.2.3 and id 5551234567 and risk-free sk-x",
	"Mail bob@example.org. Phone +1 555 123 4567",
}

func streamEngine(t testing.TB) *guard.Engine {
	return newEngine(t, "enforce", piiProvider(nil), guard.ProviderConfig{Name: "house", Type: "rules", Options: map[string]any{"rules": []any{
		map[string]any{"name": "employee_id", "pattern": `EMP-\d{6}`, "action": "mask", "max_match": int64(16)},
		map[string]any{"name": "codename", "keywords": []any{"nightingale"}, "action": "mask"},
	}}})
}

// nonStreamed is the masking of the whole answer at once.
func nonStreamed(t *testing.T, e *guard.Engine, answer string) string {
	res, err := e.Check(t.Context(), guard.Output, &guard.Content{Stage: guard.Output, Texts: []guard.Text{{Role: "assistant", Text: answer}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewritten() {
		return res.Texts[0]
	}
	return answer
}

func streamed(t *testing.T, e *guard.Engine, chunks []string) string {
	g := e.NewGate(nil, "m", nil)
	var b strings.Builder
	for _, c := range chunks {
		out, err := g.Feed(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	out, err := g.Flush(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(out)
	return b.String()
}

var secrets = []string{"alice@example.com", "555-123-4567", "4111 1111 1111 1111", "123-45-6789", "AKIAIOSFODNN7EXAMPLE",
	"sk-proj-abcdefghijklmnopqrstuvwx", "abcdefghijklmnopqrstu", "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA", "EMP-123456",
	"NIGHTINGALE", "bob@example.org", "a.b@c.de", "+44 20 7946 0958", "4111111111111111", "555 123 4567"}

func TestStreamGateEveryChunkBoundary(t *testing.T) {
	e := streamEngine(t)
	for _, answer := range streamSamples {
		want := nonStreamed(t, e, answer)
		for _, s := range secrets {
			if strings.Contains(want, s) {
				t.Fatalf("the non-streamed masking left %q in %q", s, want)
			}
		}
		check := func(chunks []string) {
			got := streamed(t, e, chunks)
			if got != want {
				t.Fatalf("chunks %q:\n got %q\nwant %q", chunks, got, want)
			}
		}
		// Every split into two, and every split into bytes.
		for i := 0; i <= len(answer); i++ {
			check([]string{answer[:i], answer[i:]})
		}
		var bytes []string
		for i := range len(answer) {
			bytes = append(bytes, answer[i:i+1])
		}
		check(bytes)
		// Random multi-splits.
		r := rand.New(rand.NewPCG(1, uint64(len(answer))))
		for range 200 {
			var chunks []string
			for i := 0; i < len(answer); {
				n := 1 + r.IntN(12)
				n = min(n, len(answer)-i)
				chunks = append(chunks, answer[i:i+n])
				i += n
			}
			check(chunks)
		}
	}
}

func TestStreamGateBlocks(t *testing.T) {
	e := newEngine(t, "enforce", piiProvider(map[string]any{"actions": map[string]any{"ssn": "block"}}))
	g := e.NewGate(nil, "m", nil)
	var released strings.Builder
	var err error
	for _, c := range []string{"fine so far. ", "ssn 123-", "45-6789 more"} {
		var out string
		if out, err = g.Feed(t.Context(), c); err != nil {
			break
		}
		released.WriteString(out)
	}
	var be *guard.BlockError
	if err == nil || !strings.Contains(err.Error(), "pii-redaction") {
		t.Fatalf("no block: %v", err)
	}
	_ = be
	if strings.Contains(released.String(), "123-45") || !strings.HasPrefix(released.String(), "fine so far.") {
		t.Errorf("released %q", released.String())
	}
	if g.Result().Action != guard.Block || g.Result().Entities["ssn"] != 1 {
		t.Errorf("result %+v", g.Result())
	}
}

var benchText = strings.Repeat("The quick brown fox jumps over the lazy dog while the router relays tokens; "+
	"version 1.2.3 shipped in 2024 with 42 fixes and a hundred tests. ", 64)

func BenchmarkPIIScanClean(b *testing.B) {
	e := newEngine(b, "enforce", piiProvider(nil))
	c := &guard.Content{Texts: []guard.Text{{Text: benchText}}}
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		res, _ := e.Check(b.Context(), guard.Input, c, nil)
		if res.Action != guard.Allow {
			b.Fatal(res.Action)
		}
	}
}

func BenchmarkPIIScannersOnly(b *testing.B) {
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		if len(guard.ScanPII(benchText)) != 0 {
			b.Fatal("match")
		}
	}
}

func BenchmarkPIIScanWithSecrets(b *testing.B) {
	text := benchText + " mail alice@example.com card 4111 1111 1111 1111"
	e := newEngine(b, "enforce", piiProvider(nil))
	c := &guard.Content{Texts: []guard.Text{{Text: text}}}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		e.Check(b.Context(), guard.Input, c, nil)
	}
}

func BenchmarkPIIStreamGate(b *testing.B) {
	e := newEngine(b, "enforce", piiProvider(nil))
	b.SetBytes(int64(len(benchText)))
	b.ReportAllocs()
	for b.Loop() {
		g := e.NewGate(nil, "m", nil)
		for i := 0; i < len(benchText); i += 16 {
			g.Feed(b.Context(), benchText[i:min(i+16, len(benchText))])
		}
		g.Flush(b.Context())
	}
}
