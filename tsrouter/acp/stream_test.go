package acp

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestReadStream(t *testing.T) {
	cases := []struct {
		name          string
		body          string
		text, thought string
		finish, tools string
		err           string
	}{
		{
			name: "text and reasoning under both names",
			body: "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"a\"}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"reasoning\":\"b\"}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n" +
				": keep-alive\n\n" +
				"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
			text: "hi", thought: "ab", finish: "stop",
		},
		{
			name: "tool calls assembled from fragments, in index order",
			body: "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c0\",\"function\":{\"name\":\"read_\",\"arguments\":\"\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"file\",\"arguments\":\"{\\\"path\\\":\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"c1\",\"function\":{\"name\":\"search\",\"arguments\":\"{}\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"a\\\"}\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
			finish: "tool_calls", tools: `c0 read_file {"path":"a"}|c1 search {}`,
		},
		{name: "cut stream", body: "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", err: "ended before the answer was finished"},
		{name: "in-band error", body: "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n", err: "overloaded"},
		{name: "malformed chunk", body: "data: {nope\n\n", err: "not JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var text, thought strings.Builder
			c, err := readStream(context.Background(), strings.NewReader(tc.body), streamHandler{
				text: func(s string) { text.WriteString(s) }, thought: func(s string) { thought.WriteString(s) },
			})
			if tc.err != "" {
				var re *RouterError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want a RouterError with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var tools []string
			for _, tc := range c.ToolCalls {
				tools = append(tools, tc.ID+" "+tc.Function.Name+" "+tc.Function.Arguments)
			}
			if text.String() != tc.text || c.Text != tc.text || thought.String() != tc.thought || c.FinishReason != tc.finish || strings.Join(tools, "|") != tc.tools {
				t.Errorf("got text %q thought %q finish %q tools %q", c.Text, thought.String(), c.FinishReason, strings.Join(tools, "|"))
			}
		})
	}
}
