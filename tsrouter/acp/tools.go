package acp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tool is one function the model may call.
type tool struct {
	name, description string
	kind              string
	params            string // JSON schema of the arguments
	// title names the call for the editor's UI.
	title func(args map[string]any) string
	// path is the file the call touches (checked to lie in the cwd), if any.
	path func(args map[string]any) string
	// preview is the diff shown when asking for an edit's permission.
	preview func(ctx context.Context, s *session, args map[string]any, abs string) []toolCallContent
	run     func(ctx context.Context, s *session, call *toolRun) (string, error)
}

// toolRun is one call in progress.
type toolRun struct {
	id   string
	args map[string]any
	abs  string // resolved path, when the tool has one
	// content is shown in the final tool_call_update.
	content []toolCallContent
}

func argString(args map[string]any, key string) string {
	s, _ := args[key].(string)
	return s
}

func argInt(args map[string]any, key string) *int {
	if f, ok := args[key].(float64); ok && f >= 0 {
		n := int(f)
		return &n
	}
	return nil
}

// tools returns the tools this session offers: the editor-backed ones only
// when the editor advertised the capability, plus MCP tools.
func (a *Agent) tools(s *session) []toolSpec {
	var specs []toolSpec
	for _, t := range a.toolset(s) {
		var sp toolSpec
		sp.Type = "function"
		sp.Function.Name = t.name
		sp.Function.Description = t.description
		sp.Function.Parameters = json.RawMessage(t.params)
		specs = append(specs, sp)
	}
	return specs
}

func (a *Agent) toolset(s *session) []*tool {
	caps := a.clientCaps()
	var ts []*tool
	if caps.FS.ReadTextFile {
		ts = append(ts, a.readFileTool())
	}
	if caps.FS.WriteTextFile {
		ts = append(ts, a.writeFileTool())
	}
	if caps.Terminal {
		ts = append(ts, a.commandTool())
	}
	ts = append(ts, searchTool(), a.planTool())
	s.mu.Lock()
	bridge := s.mcp
	s.mu.Unlock()
	if bridge != nil {
		ts = append(ts, bridge.tools()...)
	}
	return ts
}

// resolvePath makes p absolute against the session cwd and refuses any
// path that leaves it, also through symbolic links.
func resolvePath(cwd, p string) (string, error) {
	if p == "" {
		return "", errors.New("a path is required")
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(cwd, abs)
	}
	abs = filepath.Clean(abs)
	if !within(cwd, abs) {
		return "", fmt.Errorf("%s is outside the working directory", p)
	}
	// Resolve the longest existing prefix: a link inside the cwd must not
	// lead outside it.
	probe, rest := abs, ""
	for {
		real, err := filepath.EvalSymlinks(probe)
		if err == nil {
			if !within(cwd, filepath.Join(real, rest)) {
				return "", fmt.Errorf("%s leads outside the working directory", p)
			}
			return abs, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(probe), rest)
		probe = parent
	}
}

func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func (a *Agent) readFileTool() *tool {
	return &tool{
		name:        "read_file",
		description: "Read a text file of the project (through the editor, so unsaved changes are included). Optional line (1-based) and limit (number of lines).",
		kind:        "read",
		params:      `{"type":"object","properties":{"path":{"type":"string","description":"path relative to the working directory"},"line":{"type":"integer"},"limit":{"type":"integer"}},"required":["path"]}`,
		title:       func(args map[string]any) string { return "Read " + argString(args, "path") },
		path:        func(args map[string]any) string { return argString(args, "path") },
		run: func(ctx context.Context, s *session, c *toolRun) (string, error) {
			var out readTextFileResponse
			err := a.conn.call(ctx, "fs/read_text_file", readTextFileRequest{
				SessionID: s.id, Path: c.abs, Line: argInt(c.args, "line"), Limit: argInt(c.args, "limit"),
			}, &out)
			if err != nil {
				return "", err
			}
			c.content = []toolCallContent{{Type: "content", Content: &contentBlock{Type: "text", Text: "```\n" + out.Content + "\n```"}}}
			return out.Content, nil
		},
	}
}

func (a *Agent) writeFileTool() *tool {
	return &tool{
		name:        "write_file",
		description: "Create or overwrite a text file of the project with the given full content (shown to the user as a diff).",
		kind:        "edit",
		params:      `{"type":"object","properties":{"path":{"type":"string","description":"path relative to the working directory"},"content":{"type":"string","description":"the complete new content"}},"required":["path","content"]}`,
		title:       func(args map[string]any) string { return "Write " + argString(args, "path") },
		path:        func(args map[string]any) string { return argString(args, "path") },
		preview: func(ctx context.Context, s *session, args map[string]any, abs string) []toolCallContent {
			newText := argString(args, "content")
			d := toolCallContent{Type: "diff", Path: abs, NewText: &newText}
			if a.clientCaps().FS.ReadTextFile {
				var old readTextFileResponse
				if a.conn.call(ctx, "fs/read_text_file", readTextFileRequest{SessionID: s.id, Path: abs}, &old) == nil {
					d.OldText = &old.Content
				}
			}
			return []toolCallContent{d}
		},
		run: func(ctx context.Context, s *session, c *toolRun) (string, error) {
			content := argString(c.args, "content")
			if err := a.conn.call(ctx, "fs/write_text_file", writeTextFileRequest{SessionID: s.id, Path: c.abs, Content: content}, nil); err != nil {
				return "", err
			}
			return fmt.Sprintf("wrote %d bytes to %s", len(content), argString(c.args, "path")), nil
		},
	}
}

func (a *Agent) planTool() *tool {
	return &tool{
		name:        "update_plan",
		description: "Show the user your plan for a multi-step task, and update it as steps complete. Send the whole plan each time.",
		kind:        "think",
		params:      `{"type":"object","properties":{"entries":{"type":"array","items":{"type":"object","properties":{"content":{"type":"string"},"priority":{"type":"string","enum":["high","medium","low"]},"status":{"type":"string","enum":["pending","in_progress","completed"]}},"required":["content"]}}},"required":["entries"]}`,
		title:       func(map[string]any) string { return "Update the plan" },
		run: func(ctx context.Context, s *session, c *toolRun) (string, error) {
			raw, _ := json.Marshal(c.args["entries"])
			var entries []planEntry
			if err := json.Unmarshal(raw, &entries); err != nil {
				return "", fmt.Errorf("entries: %w", err)
			}
			if len(entries) == 0 {
				return "", errors.New("a plan needs at least one entry")
			}
			for i := range entries {
				if entries[i].Priority == "" {
					entries[i].Priority = "medium"
				}
				if entries[i].Status == "" {
					entries[i].Status = "pending"
				}
			}
			a.emit(s, update{SessionUpdate: "plan", Entries: entries}, true)
			return "plan updated", nil
		},
	}
}
