package guard_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// scripted is a provider that answers what the test says.
type scripted struct {
	name string
	v    guard.Verdict
	err  error
	// judge, if set, decides from the content.
	judge func(c *guard.Content) guard.Verdict
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Type() string { return "scripted" }
func (s *scripted) Check(_ context.Context, c *guard.Content) (guard.Verdict, error) {
	if s.judge != nil {
		return s.judge(c), nil
	}
	return s.v, s.err
}

var script = map[string]*scripted{}

func init() {
	guard.Register("scripted", func(pc guard.ProviderConfig, _ guard.Deps) (guard.Provider, error) {
		s, ok := script[pc.Name]
		if !ok {
			return nil, errors.New("no script")
		}
		return s, nil
	})
}

func TestEngineVerdicts(t *testing.T) {
	script["broken"] = &scripted{name: "broken", err: errors.New("connection refused")}
	script["unsure"] = &scripted{name: "unsure", v: guard.Verdict{Action: guard.Block, Category: "violence", Score: 0.4}}
	script["sure"] = &scripted{name: "sure", v: guard.Verdict{Action: guard.Block, Category: "violence", Score: 0.9}}
	script["flagger"] = &scripted{name: "flagger", v: guard.Verdict{Action: guard.Flag, Category: "profanity", Score: 1}}
	cases := []struct {
		name      string
		providers []guard.ProviderConfig
		action    guard.Action
		provider  string
	}{
		{"fail_open lets an error through", []guard.ProviderConfig{{Name: "broken", Type: "scripted", OnError: guard.FailOpen}}, guard.Allow, ""},
		{"fail_closed blocks on an error", []guard.ProviderConfig{{Name: "broken", Type: "scripted", OnError: guard.FailClosed}}, guard.Block, "broken"},
		{"under the threshold is allowed", []guard.ProviderConfig{{Name: "unsure", Type: "scripted", CategoryThresholds: map[string]float64{"violence": 0.5}}}, guard.Allow, ""},
		{"over the threshold blocks", []guard.ProviderConfig{{Name: "sure", Type: "scripted", CategoryThresholds: map[string]float64{"violence": 0.5}}}, guard.Block, "sure"},
		{"most severe wins", []guard.ProviderConfig{{Name: "flagger", Type: "scripted"}, {Name: "sure", Type: "scripted"}}, guard.Block, "sure"},
		{"a disabled provider does nothing", []guard.ProviderConfig{{Name: "sure", Type: "scripted", Enabled: false}}, guard.Allow, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := make([]guard.ProviderConfig, len(tc.providers))
			for i, p := range tc.providers {
				p.Enabled = p.Enabled || tc.name != "a disabled provider does nothing"
				p.Input, p.Output, p.Apply = true, true, guard.ApplyAll
				if p.OnError == "" {
					p.OnError = guard.FailOpen
				}
				ps[i] = p
			}
			e, err := guard.New(guard.Config{Enabled: true, Mode: guard.ModeEnforce, Providers: ps}, guard.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Check(t.Context(), guard.Input, &guard.Content{Texts: []guard.Text{{Text: "x"}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != tc.action || res.Provider != tc.provider {
				t.Errorf("got %v by %q, want %v by %q", res.Action, res.Provider, tc.action, tc.provider)
			}
		})
	}
}

func TestEngineRefusesBadConfig(t *testing.T) {
	for name, pc := range map[string]guard.ProviderConfig{
		"unknown type":        {Name: "a", Type: "magic", Enabled: true},
		"bad pii action":      {Name: "a", Type: "pii", Enabled: true, Options: map[string]any{"default_action": "shout"}},
		"unknown pii option":  {Name: "a", Type: "pii", Enabled: true, Options: map[string]any{"colour": "red"}},
		"bad regex":           {Name: "a", Type: "rules", Enabled: true, Options: map[string]any{"rules": []any{map[string]any{"name": "r", "pattern": "(", "action": "block"}}}},
		"rule without action": {Name: "a", Type: "rules", Enabled: true, Options: map[string]any{"rules": []any{map[string]any{"name": "r", "keywords": []any{"x"}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := guard.New(guard.Config{Enabled: true, Providers: []guard.ProviderConfig{pc}}, guard.Deps{}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// A model-based provider on a stream: with output_check = "window" no
// window leaves before the provider has seen it; with "end" the answer is
// checked once, at the end, after it was released.
func TestGateModelWindows(t *testing.T) {
	calls := 0
	script["judge"] = &scripted{name: "judge", judge: func(c *guard.Content) guard.Verdict {
		calls++
		if strings.Contains(c.Texts[len(c.Texts)-1].Text, "bomb") {
			return guard.Verdict{Action: guard.Block, Category: guard.CategoryDangerous, Score: 1}
		}
		return guard.Verdict{}
	}}
	chunks := []string{"hello there, ", "friend. Here is ", "how to build a ", "bomb: step one"}
	for _, tc := range []struct {
		check    string
		released string // what the caller got before the block
	}{
		{"window", "hello there, friend. Here is "},
		{"end", "hello there, friend. Here is how to build a bomb: step one"},
	} {
		t.Run(tc.check, func(t *testing.T) {
			calls = 0
			e, err := guard.New(guard.Config{Enabled: true, Mode: guard.ModeEnforce, OutputCheck: tc.check, OutputWindow: 16, MaxHold: 4096,
				Providers: []guard.ProviderConfig{{Name: "judge", Type: "scripted", Enabled: true, Output: true, OnError: guard.FailOpen, Apply: guard.ApplyAll}}}, guard.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			g := e.NewGate([]guard.Text{{Role: "user", Text: "hi"}}, "m", nil)
			var got strings.Builder
			var blocked error
			for _, c := range chunks {
				out, err := g.Feed(t.Context(), c)
				got.WriteString(out)
				if err != nil {
					blocked = err
					break
				}
			}
			if blocked == nil {
				out, err := g.Flush(t.Context())
				got.WriteString(out)
				blocked = err
			}
			var be *guard.BlockError
			if !errors.As(blocked, &be) || be.Provider != "judge" || be.Category != "dangerous" {
				t.Fatalf("not blocked: %v", blocked)
			}
			if got.String() != tc.released {
				t.Errorf("released %q, want %q", got.String(), tc.released)
			}
			if tc.check == "end" && calls != 1 {
				t.Errorf("%d checks at the end, want 1", calls)
			}
		})
	}
}
