package acp

import (
	"slices"
)

// verdict is what the policy says about one tool call before asking.
type verdict int

const (
	allow verdict = iota
	reject
	ask
)

func (v verdict) String() string { return [...]string{"allow", "reject", "ask"}[v] }

// readOnlyKinds are the kinds default_policy "allow_read" lets through.
var readOnlyKinds = []string{"read", "search", "think"}

// policy decides whether a tool call of a kind runs, is refused, or needs
// the user's answer. The order is:
//  1. an "always" answer the user gave for this tool in this session;
//  2. always_ask: these kinds are asked whatever the default policy says;
//  3. auto_allow: these kinds run without asking;
//  4. default_policy: allow_all runs everything, allow_read runs the
//     read-only kinds (read, search, think), ask_always asks.
type policy struct {
	cfg Permissions
}

func (p policy) decide(kind string, remembered map[string]bool, tool string) verdict {
	if ok, found := remembered[tool]; found {
		if ok {
			return allow
		}
		return reject
	}
	switch {
	case slices.Contains(p.cfg.AlwaysAsk, kind):
		return ask
	case slices.Contains(p.cfg.AutoAllow, kind):
		return allow
	}
	switch p.cfg.DefaultPolicy {
	case PolicyAllowAll:
		return allow
	case PolicyAllowRead:
		if slices.Contains(readOnlyKinds, kind) {
			return allow
		}
	}
	return ask
}

// The options of a permission request, and what each one means.
var permissionOptions = []permissionOption{
	{OptionID: "allow-once", Name: "Allow once", Kind: "allow_once"},
	{OptionID: "allow-always", Name: "Always allow", Kind: "allow_always"},
	{OptionID: "reject-once", Name: "Reject", Kind: "reject_once"},
	{OptionID: "reject-always", Name: "Always reject", Kind: "reject_always"},
}

// answer reads the user's choice: whether the call may run and whether the
// choice is to be remembered for the rest of the session.
func answer(optionID string) (allowed, always, known bool) {
	switch optionID {
	case "allow-once":
		return true, false, true
	case "allow-always":
		return true, true, true
	case "reject-once":
		return false, false, true
	case "reject-always":
		return false, true, true
	}
	return false, false, false
}
