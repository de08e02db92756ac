package acp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// maxToolResult bounds what one tool call hands the model (a huge file
// or command output would fill its context and the session record).
const maxToolResult = 256 << 10

// changingKinds are refused in the read-only mode.
var changingKinds = []string{"edit", "delete", "move", "execute"}

// runTool runs one tool call of the model with the editor watching: a
// tool_call update, the permission check, the run, and a final
// tool_call_update. It returns what the model is told.
func (a *Agent) runTool(ctx context.Context, s *session, tc toolCall) string {
	id := newToolCallID()
	var t *tool
	for _, c := range a.toolset(s) {
		if c.name == tc.Function.Name {
			t = c
			break
		}
	}
	args := map[string]any{}
	rawInput := json.RawMessage(tc.Function.Arguments)
	if tc.Function.Arguments == "" {
		rawInput = json.RawMessage("{}")
	}
	argErr := json.Unmarshal(rawInput, &args)
	if argErr != nil {
		rawInput = nil
	}
	kind, title := "other", tc.Function.Name
	if t != nil {
		kind = t.kind
		if argErr == nil {
			title = t.title(args)
		}
	}
	call := update{SessionUpdate: "tool_call", toolCallFields: toolCallFields{
		ToolCallID: id, Title: title, Kind: kind, Status: statusPending, RawInput: rawInput,
	}}
	fail := func(msg string) string {
		a.emit(s, update{SessionUpdate: "tool_call_update", toolCallFields: toolCallFields{
			ToolCallID: id, Status: statusFailed,
			ToolContent: []toolCallContent{{Type: "content", Content: &contentBlock{Type: "text", Text: msg}}},
		}}, true)
		return "Error: " + msg
	}
	run := &toolRun{id: id, args: args}
	var pathErr error
	if t != nil && t.path != nil && argErr == nil {
		run.abs, pathErr = resolvePath(s.cwd, t.path(args))
		if pathErr == nil {
			call.Locations = []toolCallLocation{{Path: run.abs}}
		}
	}
	a.emit(s, call, true)
	switch {
	case t == nil:
		return fail(fmt.Sprintf("there is no tool named %q", tc.Function.Name))
	case argErr != nil:
		return fail("the arguments are not a JSON object: " + argErr.Error())
	case pathErr != nil:
		return fail(pathErr.Error())
	}

	s.mu.Lock()
	mode := s.rec.Mode
	remembered := maps.Clone(s.rec.Always)
	s.mu.Unlock()
	v := a.policy.decide(kind, remembered, t.name)
	if mode == modeReadOnly && slices.Contains(changingKinds, kind) {
		v = reject
	}
	// The diff is taken before the change: shown when asking, and in the
	// final update.
	var preview []toolCallContent
	if t.preview != nil && v != reject {
		preview = t.preview(ctx, s, args, run.abs)
	}
	if v == ask {
		allowed, err := a.askPermission(ctx, s, t.name, call, preview)
		if err != nil {
			if ctx.Err() != nil {
				return fail("cancelled")
			}
			return fail("asking for permission failed: " + err.Error())
		}
		v = reject
		if allowed {
			v = allow
		}
	}
	if v == reject {
		return fail("the user did not allow this " + kind + " call")
	}

	a.emit(s, update{SessionUpdate: "tool_call_update", toolCallFields: toolCallFields{ToolCallID: id, Status: statusInProgress}}, false)
	out, err := t.run(ctx, s, run)
	if err != nil {
		var re *RPCError
		if errors.As(err, &re) {
			return fail(re.Message)
		}
		return fail(err.Error())
	}
	if len(out) > maxToolResult {
		out = out[:maxToolResult] + fmt.Sprintf("\n[truncated: %d bytes in all]", len(out))
	}
	content := run.content
	if content == nil {
		content = preview
	}
	if content == nil {
		content = []toolCallContent{{Type: "content", Content: &contentBlock{Type: "text", Text: out}}}
	}
	raw, _ := json.Marshal(map[string]string{"output": out})
	a.emit(s, update{SessionUpdate: "tool_call_update", toolCallFields: toolCallFields{
		ToolCallID: id, Status: statusCompleted, ToolContent: content, RawOutput: raw,
	}}, true)
	return out
}

// askPermission asks the user through session/request_permission and
// remembers "always" answers for the rest of the session.
func (a *Agent) askPermission(ctx context.Context, s *session, toolName string, call update, preview []toolCallContent) (bool, error) {
	tc := call.toolCallFields
	tc.ToolContent = preview
	u := update{toolCallFields: tc}
	b, err := json.Marshal(u)
	if err != nil {
		return false, err
	}
	// The toolCall of a permission request has no sessionUpdate field.
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	delete(m, "sessionUpdate")
	b, _ = json.Marshal(m)
	var resp permissionResponse
	if err := a.conn.call(ctx, "session/request_permission", permissionRequest{SessionID: s.id, ToolCall: b, Options: permissionOptions}, &resp); err != nil {
		return false, err
	}
	if resp.Outcome.Outcome == "cancelled" {
		return false, nil
	}
	allowed, always, known := answer(resp.Outcome.OptionID)
	if !known {
		return false, fmt.Errorf("the editor chose an unknown option %q", resp.Outcome.OptionID)
	}
	if always {
		s.mu.Lock()
		if s.rec.Always == nil {
			s.rec.Always = map[string]bool{}
		}
		s.rec.Always[toolName] = allowed
		s.mu.Unlock()
	}
	return allowed, nil
}
