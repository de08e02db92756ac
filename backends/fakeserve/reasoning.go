package fakeserve

import (
	"bytes"
	"strconv"
	"strings"
)

// Reasoning deltas and parallel tool calls, for routers that translate
// them (the Responses and Messages dialects): Options.Reasoning streams
// reasoning before the answer the way vLLM's reasoning parsers do, and
// Options.ParallelTools answers a tool request with one call per declared
// tool, streamed one after another with the arguments split over several
// chunks, as vLLM's tool parsers do.

// reasoningFrames are the chunk suffixes carrying the reasoning deltas,
// under vLLM's "reasoning" key.
func reasoningFrames(deltas []string) [][]byte {
	frames := make([][]byte, len(deltas))
	for i, d := range deltas {
		frames[i] = concat(`{"index":0,"delta":{"reasoning":`, string(jsonString(d)), `}`, choiceEnd)
	}
	return frames
}

// withReasoning puts the configured reasoning before the answer's frames.
func (c *chat) withReasoning(frames [][]byte) [][]byte {
	if len(c.p.opts.Reasoning) == 0 {
		return frames
	}
	return append(reasoningFrames(c.p.opts.Reasoning), frames...)
}

// reasoningMessage fills a non-streaming message's reasoning_content (vLLM
// names it so there) with the configured reasoning.
func (c *chat) reasoningMessage(b []byte) []byte {
	if len(c.p.opts.Reasoning) == 0 {
		return b
	}
	field := append([]byte(`"reasoning_content":`), jsonString(strings.Join(c.p.opts.Reasoning, ""))...)
	return bytes.Replace(b, []byte(`"reasoning_content":null`), field, 1)
}

// toolNames returns every declared tool's name (ParallelTools).
func (q *chatRequest) toolNames() []string {
	names := make([]string, 0, len(q.Tools))
	for _, t := range q.Tools {
		if t.Function.Name != "" {
			names = append(names, t.Function.Name)
		}
	}
	return names
}

// parallelFrames streams one call per name: a header fragment with id and
// name, then the arguments {"city":"Paris"} in three fragments.
func parallelFrames(names []string) [][]byte {
	var frames [][]byte
	for i, name := range names {
		idx := strconv.Itoa(i)
		head := append([]byte(`{"index":0,"delta":{"tool_calls":[{"index":`+idx+`,"id":"`), toolCallID()...)
		head = append(head, `","type":"function","function":{"name":`...)
		head = append(head, jsonString(name)...)
		head = append(head, `,"arguments":""}}]}`...)
		frames = append(frames, append(head, choiceEnd...))
		for _, frag := range []string{`{"city":`, `"Paris"`, `}`} {
			frames = append(frames, concat(`{"index":0,"delta":{"tool_calls":[{"index":`, idx, `,"function":{"arguments":`, string(jsonString(frag)), `}}]}`, choiceEnd))
		}
	}
	return frames
}

// appendParallelCalls appends a non-streaming tool_calls array with one
// call per name.
func appendParallelCalls(b []byte, names []string) []byte {
	b = append(b, '[')
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, toolCallID()...)
		b = append(b, `","type":"function","function":{"name":`...)
		b = append(b, jsonString(name)...)
		b = append(b, `,"arguments":`...)
		b = append(b, jsonString(toolArgs)...)
		b = append(b, `}}`...)
	}
	return append(b, ']')
}
