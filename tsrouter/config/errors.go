package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// Line is 1-based; 0 when the problem has no place in the file (a
	// missing top-level table, an unreadable file).
	Line int
	// Key is the dotted path of the offending value, e.g.
	// router.tiers[1].base_url or router.model_routes."llm.primary"; ""
	// for file-level problems such as TOML syntax errors without a key.
	Key string
	// Msg says what is wrong. It never contains a secret's value.
	Msg string
}

// Error reports every problem found in one config file, so an operator can
// fix them all in one pass instead of one restart per mistake.
type Error struct {
	File     string
	Problems []Problem
	// cause is the I/O error behind a read failure, kept for errors.Is.
	cause error
}

// Error renders one problem per line as FILE:LINE: KEY: MSG.
func (e *Error) Error() string {
	file := e.File
	if file == "" {
		file = "<config>"
	}
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(file)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Key != "" {
			b.WriteString(p.Key)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Unwrap exposes the file-system error of a failed Load (nil otherwise), so
// callers can test errors.Is(err, fs.ErrNotExist).
func (e *Error) Unwrap() error { return e.cause }

// sortProblems orders problems as they appear in the file; problems without
// a line come first because they are about the file as a whole.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
}
