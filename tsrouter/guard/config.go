package guard

import "time"

// Config is the operator's [guardrails] table, validated by the config
// package: which providers run, how, and on which stages.
type Config struct {
	// Enabled turns guardrails on (default off: the router then does no
	// guardrail work at all).
	Enabled bool
	// Mode is "enforce" (verdicts act) or "monitor" (verdicts are only
	// recorded; the text goes on unchanged).
	Mode string
	// OutputCheck is how model-based providers (guard_model, webhook)
	// check a streamed answer: "window" (every OutputWindow characters,
	// before they are released) or "end" (once, when the answer is whole).
	OutputCheck string
	// OutputWindow is the window size in bytes for OutputCheck "window".
	OutputWindow int
	// MaxHold bounds the bytes of a streamed answer the pattern gate
	// holds back while a match could still complete.
	MaxHold int
	// Providers are the [[guardrails.providers]] entries, in file order.
	Providers []ProviderConfig
}

// The modes, output checks and on_error policies.
const (
	ModeEnforce = "enforce"
	ModeMonitor = "monitor"

	OutputWindowed = "window"
	OutputAtEnd    = "end"

	FailOpen   = "fail_open"
	FailClosed = "fail_closed"

	// ApplyAll providers apply to every caller; ApplyOnRequest ones only
	// to callers whose grant or API key names them.
	ApplyAll       = "all"
	ApplyOnRequest = "on_request"
)

// Defaults of the [guardrails] table.
const (
	DefaultOutputWindow = 512
	DefaultMaxHold      = 4096
)

// ProviderTypes are the provider types a [[guardrails.providers]] entry
// may name.
var ProviderTypes = []string{"pii", "rules", "guard_model", "webhook"}

// ProviderConfig is one [[guardrails.providers]] entry.
type ProviderConfig struct {
	Name    string
	Type    string
	Enabled bool
	// Input and Output are the stages it runs on (default both).
	Input, Output bool
	// OnError is FailOpen (an error allows) or FailClosed (an error blocks).
	OnError string
	// Apply is ApplyAll (default) or ApplyOnRequest.
	Apply string
	// Timeout bounds one Check (0: the provider's own default).
	Timeout time.Duration
	// Options is the provider's own table, as decoded from TOML
	// (strings, int64, float64, bool, []any, map[string]any).
	Options map[string]any
	// CategoryThresholds drops a Flag or Block whose Score is under the
	// category's threshold (the verdict becomes Allow).
	CategoryThresholds map[string]float64
}

// Runs reports whether the provider runs on stage s.
func (p ProviderConfig) Runs(s Stage) bool {
	if s == Input {
		return p.Input
	}
	return p.Output
}
