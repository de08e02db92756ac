package acp

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// commandTimeout bounds one command unless the model asks for less.
const commandTimeout = 10 * time.Minute

// commandOutputLimit is the outputByteLimit asked of the editor's terminal.
const commandOutputLimit = 64 << 10

func (a *Agent) commandTool() *tool {
	return &tool{
		name:        "run_command",
		description: "Run a shell command in the working directory, in a terminal the user sees. Returns its output and exit status.",
		kind:        "execute",
		params:      `{"type":"object","properties":{"command":{"type":"string","description":"a command line for /bin/sh"},"timeout_seconds":{"type":"integer"}},"required":["command"]}`,
		title:       func(args map[string]any) string { return argString(args, "command") },
		run:         a.runCommand,
	}
}

// runCommand runs a command in an editor terminal: create, show it in the
// tool call, wait for the exit (killing it on cancel or timeout), read the
// output, release.
func (a *Agent) runCommand(ctx context.Context, s *session, c *toolRun) (string, error) {
	cmdline := argString(c.args, "command")
	if strings.TrimSpace(cmdline) == "" {
		return "", fmt.Errorf("command is empty")
	}
	timeout := commandTimeout
	if n := argInt(c.args, "timeout_seconds"); n != nil && *n > 0 && time.Duration(*n)*time.Second < timeout {
		timeout = time.Duration(*n) * time.Second
	}
	var term createTerminalResponse
	if err := a.conn.call(ctx, "terminal/create", createTerminalRequest{
		SessionID: s.id, Command: "/bin/sh", Args: []string{"-c", cmdline}, CWD: s.cwd, OutputByteLimit: commandOutputLimit,
	}, &term); err != nil {
		return "", err
	}
	ref := terminalRequest{SessionID: s.id, TerminalID: term.TerminalID}
	// Release even when the turn was cancelled: the editor keeps the
	// process otherwise.
	defer a.conn.call(context.WithoutCancel(ctx), "terminal/release", ref, nil) //nolint:errcheck
	c.content = []toolCallContent{{Type: "terminal", TerminalID: term.TerminalID}}
	a.emit(s, update{SessionUpdate: "tool_call_update", toolCallFields: toolCallFields{
		ToolCallID: c.id, Status: statusInProgress, ToolContent: c.content,
	}}, false)

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var exit terminalExitStatus
	waitErr := a.conn.call(wctx, "terminal/wait_for_exit", ref, &exit)
	if waitErr != nil {
		a.conn.call(context.WithoutCancel(ctx), "terminal/kill", ref, nil) //nolint:errcheck
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	var out terminalOutputResponse
	if err := a.conn.call(context.WithoutCancel(ctx), "terminal/output", ref, &out); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(out.Output)
	if out.Truncated {
		b.WriteString("\n[output truncated]")
	}
	switch {
	case waitErr != nil:
		fmt.Fprintf(&b, "\n[killed after %s]", timeout)
	case exit.ExitCode != nil:
		fmt.Fprintf(&b, "\n[exit status %d]", *exit.ExitCode)
	case exit.Signal != nil:
		fmt.Fprintf(&b, "\n[killed by signal %s]", *exit.Signal)
	}
	return b.String(), nil
}

// Search limits: enough for a model to find its way, small enough for its
// context.
const (
	searchMaxMatches  = 100
	searchMaxFileSize = 1 << 20
)

func searchTool() *tool {
	return &tool{
		name:        "search",
		description: "Search the project's files for a regular expression (Go syntax). Optional path narrows it to a file or directory. Returns path:line: text for each match.",
		kind:        "search",
		params:      `{"type":"object","properties":{"pattern":{"type":"string"},"path":{"type":"string","description":"file or directory relative to the working directory"}},"required":["pattern"]}`,
		title:       func(args map[string]any) string { return "Search for " + argString(args, "pattern") },
		path: func(args map[string]any) string {
			if p := argString(args, "path"); p != "" {
				return p
			}
			return "."
		},
		run: func(ctx context.Context, s *session, c *toolRun) (string, error) {
			return searchFiles(ctx, s.cwd, c.abs, argString(c.args, "pattern"))
		},
	}
}

// searchFiles greps the regular files under root (within cwd), skipping
// hidden directories, node_modules, large and binary files, and symbolic
// links (which could lead outside cwd).
func searchFiles(ctx context.Context, cwd, root, pattern string) (string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return "", fmt.Errorf("pattern: %w", err)
	}
	var out []string
	errFull := fmt.Errorf("full")
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > searchMaxFileSize {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		rel, _ := filepath.Rel(cwd, p)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), searchMaxFileSize)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.ContainsRune(line, 0) {
				return nil // binary
			}
			if re.MatchString(line) {
				out = append(out, fmt.Sprintf("%s:%d: %s", rel, n, strings.TrimSpace(line)))
				if len(out) >= searchMaxMatches {
					return errFull
				}
			}
		}
		return nil
	})
	if walkErr != nil && walkErr != errFull {
		return "", walkErr
	}
	if len(out) == 0 {
		return "no matches", nil
	}
	res := strings.Join(out, "\n")
	if walkErr == errFull {
		res += fmt.Sprintf("\n[stopped at %d matches]", searchMaxMatches)
	}
	return res, nil
}
