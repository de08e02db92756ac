package fakeserve_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestScriptedCalls: a "fake:call NAME {args}" line in the last user
// message calls that declared tool with exactly those arguments, streamed
// or not; "fake:text" answers with text although tools are declared.
func TestScriptedCalls(t *testing.T) {
	_, base, c := serve(t, fakeserve.Options{})
	const tools = `"tools":[{"type":"function","function":{"name":"first"}},{"type":"function","function":{"name":"read_file"}}]`
	user := func(s string) string {
		b, _ := json.Marshal(s)
		return `{"messages":[{"role":"user","content":` + string(b) + `}],` + tools
	}
	cases := []struct {
		name, body     string
		wantTool       string
		wantArgs, text string
	}{
		{"scripted call", user("please\n" + fakeserve.ScriptPrefix + `read_file {"path":"a b.txt"}`), "read_file", `{"path":"a b.txt"}`, ""},
		{"list content", `{"messages":[{"role":"user","content":[{"type":"text","text":"fake:call read_file {\"x\":1}"}]}],` + tools, "read_file", `{"x":1}`, ""},
		{"undeclared tool falls back", user(fakeserve.ScriptPrefix + `rm {"all":true}`), "first", `{"city":"Paris"}`, ""},
		{"invalid JSON falls back", user(fakeserve.ScriptPrefix + `read_file {nope}`), "first", `{"city":"Paris"}`, ""},
		{"not at line start", user(`say fake:call read_file {}`), "first", `{"city":"Paris"}`, ""},
		{"text", user("fake:text"), "", "", strings.Join(fakeserve.DefaultDeltas(), "")},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/non-stream", true: "/stream"}[stream], func(t *testing.T) {
				body := tc.body + `}`
				if stream {
					body = tc.body + `,"stream":true}`
				}
				resp, data, err := do(t, c, http.MethodPost, base+"/v1/chat/completions", body, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("status %d, %v: %s", resp.StatusCode, err, data)
				}
				var name, args, text string
				collect := func(msg json.RawMessage) {
					var m struct {
						Content   string `json:"content"`
						ToolCalls []struct {
							Function struct{ Name, Arguments string } `json:"function"`
						} `json:"tool_calls"`
					}
					mustUnmarshal(t, msg, &m)
					text += m.Content
					for _, tc := range m.ToolCalls {
						name += tc.Function.Name
						args += tc.Function.Arguments
					}
				}
				if stream {
					frames, err := readFrames(t, bytes.NewReader(data))
					if err != nil {
						t.Fatal(err)
					}
					for _, d := range datas(frames) {
						if d == "[DONE]" {
							continue
						}
						var ch struct {
							Choices []struct {
								Delta json.RawMessage `json:"delta"`
							} `json:"choices"`
						}
						mustUnmarshal(t, []byte(d), &ch)
						for _, c := range ch.Choices {
							collect(c.Delta)
						}
					}
				} else {
					var r struct {
						Choices []struct {
							Message json.RawMessage `json:"message"`
						} `json:"choices"`
					}
					mustUnmarshal(t, data, &r)
					collect(r.Choices[0].Message)
				}
				if name != tc.wantTool || args != tc.wantArgs || text != tc.text {
					t.Errorf("tool %q args %q text %q; want %q %q %q", name, args, text, tc.wantTool, tc.wantArgs, tc.text)
				}
			})
		}
	}
}
