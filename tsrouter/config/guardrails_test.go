package config_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

const seedGuardrails = `
[guardrails]
enabled = true
mode = "monitor"
output_check = "end"
output_window = 256
max_hold = 1024

[[guardrails.providers]]
name = "pii-redaction"
type = "pii"
stages = ["input", "output"]
on_error = "fail_closed"
[guardrails.providers.options]
default_action = "mask"
placeholder_format = "<REDACTED:{TYPE}>"
[guardrails.providers.options.actions]
ssn = "block"

[[guardrails.providers]]
name = "strict-pii"
type = "rules"
enabled = false
apply = "on_request"
stages = ["output"]
timeout = "2s"
category_thresholds = { violence = 0.5, pii = 1 }
`

func TestGuardrailsOptions(t *testing.T) {
	g := mustParse(t, doc("", tierLines(), seedGuardrails)).Guardrails
	want := config.Guardrails{
		Enabled: true, Mode: "monitor", OutputCheck: "end", OutputWindow: 256, MaxHold: 1024,
		Providers: []guard.ProviderConfig{
			{
				Name: "pii-redaction", Type: "pii", Enabled: true, Input: true, Output: true, OnError: "fail_closed", Apply: "all",
				Options: map[string]any{
					"default_action": "mask", "placeholder_format": "<REDACTED:{TYPE}>",
					"actions": map[string]any{"ssn": "block"},
				},
			},
			{
				Name: "strict-pii", Type: "rules", Output: true, OnError: "fail_open", Apply: "on_request", Timeout: 2 * time.Second,
				CategoryThresholds: map[string]float64{"violence": 0.5, "pii": 1},
			},
		},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("got  %+v\nwant %+v", g, want)
	}
}

func TestGuardrailsDefaults(t *testing.T) {
	for name, text := range map[string]string{
		"absent": doc("", tierLines(), ""),
		"empty":  doc("", tierLines(), "[guardrails]\n"),
	} {
		t.Run(name, func(t *testing.T) {
			g := mustParse(t, text).Guardrails
			if g.Enabled || g.Mode != "enforce" || g.OutputCheck != "window" || g.OutputWindow != guard.DefaultOutputWindow || g.MaxHold != guard.DefaultMaxHold {
				t.Errorf("defaults: %+v", g)
			}
		})
	}
}

func TestGuardrailsProblems(t *testing.T) {
	cases := []struct {
		name, text string
		wants      []want
	}{
		{"unknown key", "[guardrails]\nenabeld = true\n", []want{{"guardrails.enabeld", "enabeld", "unknown field in [guardrails]"}}},
		{"bad mode", "[guardrails]\nmode = \"audit\"\n", []want{{"guardrails.mode", "audit", "enforce, monitor"}}},
		{"bad output check", "[guardrails]\noutput_check = \"never\"\n", []want{{"guardrails.output_check", "never", "window, end"}}},
		{"tiny hold", "[guardrails]\nmax_hold = 1\n", []want{{"guardrails.max_hold", "max_hold", "between 64"}}},
		{"unknown provider key", "[[guardrails.providers]]\nname = \"a\"\ntype = \"pii\"\ncolour = \"x\"\n", []want{{"guardrails.providers[0].colour", "colour", "unknown field"}}},
		{"unknown type", "[[guardrails.providers]]\nname = \"a\"\ntype = \"regex\"\n", []want{{"guardrails.providers[0].type", "regex", "pii, rules, guard_model, webhook"}}},
		{"missing name", "[[guardrails.providers]]\ntype = \"pii\"\n", []want{{"guardrails.providers[0].name", "[[guardrails.providers]]", "required"}}},
		{"duplicate name", "[[guardrails.providers]]\nname = \"a\"\ntype = \"pii\"\n[[guardrails.providers]]\nname = \"a\" # again\ntype = \"rules\"\n", []want{{"guardrails.providers[1].name", "again", "duplicate provider name"}}},
		{"bad stage", "[[guardrails.providers]]\nname = \"a\"\ntype = \"pii\"\nstages = [\"middle\"]\n", []want{{"guardrails.providers[0].stages[0]", "middle", "input"}}},
		{"bad on_error", "[[guardrails.providers]]\nname = \"a\"\ntype = \"pii\"\non_error = \"ignore\"\n", []want{{"guardrails.providers[0].on_error", "ignore", "fail_open, fail_closed"}}},
		{"threshold over 1", "[[guardrails.providers]]\nname = \"a\"\ntype = \"pii\"\ncategory_thresholds = { pii = 2 }\n", []want{{"guardrails.providers[0].category_thresholds.pii", "category_thresholds", "between 0 and 1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, doc("", tierLines(), tc.text), tc.wants)
		})
	}
}
