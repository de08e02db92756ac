package acp

import "testing"

func TestPolicy(t *testing.T) {
	def := defaultPermissions()
	with := func(policy string) Permissions { p := def; p.DefaultPolicy = policy; return p }
	cases := []struct {
		name       string
		perms      Permissions
		kind, tool string
		remembered map[string]bool
		want       verdict
	}{
		{"read auto-allowed", def, "read", "read_file", nil, allow},
		{"search auto-allowed", def, "search", "search", nil, allow},
		{"edit asks", def, "edit", "write_file", nil, ask},
		{"execute asks", def, "execute", "run_command", nil, ask},
		{"other asks under ask_always", def, "other", "mcp__x__y", nil, ask},
		{"allow_all runs other", with(PolicyAllowAll), "other", "mcp__x__y", nil, allow},
		{"allow_all still asks always_ask kinds", with(PolicyAllowAll), "edit", "write_file", nil, ask},
		{"allow_read asks for fetch", with(PolicyAllowRead), "fetch", "f", nil, ask},
		{"allow_read runs think", Permissions{DefaultPolicy: PolicyAllowRead}, "think", "update_plan", nil, allow},
		{"ask_always without lists asks reads", Permissions{DefaultPolicy: PolicyAskAlways}, "read", "read_file", nil, ask},
		{"allow-always remembered", def, "edit", "write_file", map[string]bool{"write_file": true}, allow},
		{"reject-always remembered", def, "read", "read_file", map[string]bool{"read_file": false}, reject},
		{"remembered for another tool only", def, "edit", "write_file", map[string]bool{"run_command": true}, ask},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (policy{cfg: tc.perms}).decide(tc.kind, tc.remembered, tc.tool); got != tc.want {
				t.Errorf("decide(%s) = %s, want %s", tc.kind, got, tc.want)
			}
		})
	}
}

func TestPermissionAnswers(t *testing.T) {
	for _, o := range permissionOptions {
		allowed, always, known := answer(o.OptionID)
		if !known || allowed != (o.Kind == "allow_once" || o.Kind == "allow_always") || always != (o.Kind == "allow_always" || o.Kind == "reject_always") {
			t.Errorf("option %s (%s): allowed %t always %t known %t", o.OptionID, o.Kind, allowed, always, known)
		}
	}
	if _, _, known := answer("allow-forever"); known {
		t.Error("an unknown option id was accepted")
	}
}
