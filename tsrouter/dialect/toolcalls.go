package dialect

import (
	"fmt"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// toolEvents is what a stream translator emits for a tool call: the start
// of its block or item (tc indexes the translator's tools), and argument
// text for the open one (escaped: already JSON-string-escaped fragments).
type toolEvents interface {
	startTool(tc int)
	argsDelta(args []byte, escaped bool)
}

// addToolCalls handles an OpenAI delta's tool_calls for a translator that
// gives each call its own block or item: each element names its call by
// index; the first fragment of a call brings its id and name, later ones
// argument text. finished says, for errors, what "done" is called in the
// target dialect.
func addToolCalls(tools *[]toolState, ev toolEvents, calls []byte, finished string) error {
	it := jsonobj.ElementIter(calls)
	for pos := 0; ; pos++ {
		el, ok := it.Element()
		if !ok {
			return nil
		}
		idx, id, name, args := pos, []byte(nil), []byte(nil), []byte(nil)
		m := jsonobj.MemberIter(el)
		for k, v, ok := m.Member(); ok; k, v, ok = m.Member() {
			switch string(k) {
			case "index":
				if n, ok := atoi(v); ok {
					idx = n
				}
			case "id":
				id = v
			case "function":
				f := jsonobj.MemberIter(v)
				for k, v, ok := f.Member(); ok; k, v, ok = f.Member() {
					switch string(k) {
					case "name":
						name = v
					case "arguments":
						args = v
					}
				}
			}
		}
		if err := addToolFragment(tools, ev, idx, id, name, args, finished); err != nil {
			return err
		}
	}
}

// addToolFragment records one element of tool_calls: a call starts (ev's
// startTool) once its name is known; argument text goes to the open call
// (ev's argsDelta), and text for a call already finished is an error.
func addToolFragment(tools *[]toolState, ev toolEvents, idx int, id, name, args []byte, finished string) error {
	tc := -1
	for i := range *tools {
		if (*tools)[i].upstream == idx {
			tc = i
			break
		}
	}
	if tc < 0 {
		(*tools) = append((*tools), toolState{upstream: idx, block: -1})
		tc = len((*tools)) - 1
	}
	s := &(*tools)[tc]
	hasArgs := nonEmptyString(args) || len(args) > 0 && args[0] == '{'
	if s.closed {
		if hasArgs {
			return fmt.Errorf("%w: tool call %d continued after "+finished, ErrMalformedEvent, idx)
		}
		return nil // a repeated id/name or an empty fragment: nothing new
	}
	if s.block < 0 {
		if nonEmptyString(id) && s.id == nil {
			s.id = append([]byte(nil), id...)
		}
		if nonEmptyString(name) && s.name == nil {
			s.name = append([]byte(nil), name...)
		}
		if hasArgs {
			s.args = appendArgs(s.args, args)
		}
		if s.name == nil {
			// Some serves send the id first: wait for the name, which
			// the block or item start must carry.
			return nil
		}
		ev.startTool(tc)
		if len(s.args) > 0 {
			ev.argsDelta(s.args, true)
			s.args = nil
		}
		return nil
	}
	if hasArgs {
		// A started, unclosed tool call is the open block or item.
		ev.argsDelta(args, false)
	}
	return nil
}
