package guard_test

import (
	"context"
	"errors"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// scripted is a provider that answers what the test says.
type scripted struct {
	name string
	v    guard.Verdict
	err  error
}

func (s *scripted) Name() string { return s.name }
func (s *scripted) Type() string { return "scripted" }
func (s *scripted) Check(context.Context, *guard.Content) (guard.Verdict, error) {
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
