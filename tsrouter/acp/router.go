package acp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Router is the agent's way to the models: the anvil router's
// OpenAI-compatible API at BaseURL, reached through Client (plain HTTP
// through the machine's Tailscale, or a tsnet node of the agent's own).
type Router struct {
	BaseURL string
	Client  *http.Client
	// Token is the router token (Authorization: Bearer) and Key an API key
	// (x-api-key); both come from the environment, never from flags or files.
	Token, Key string
}

// chatMessage is one OpenAI chat message of the conversation the agent
// keeps per session.
type chatMessage struct {
	Role string `json:"role"`
	// Content is a string, null (an assistant message with only tool
	// calls) or a list of parts (a prompt with images or audio).
	Content    any        `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolSpec is a function tool offered to the model.
type toolSpec struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// contentPart is one part of a multi-part user message.
type contentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url,omitempty"`
	InputAudio *struct {
		Data   string `json:"data"`
		Format string `json:"format"`
	} `json:"input_audio,omitempty"`
}

// completion is what one streamed model call produced.
type completion struct {
	Text         string
	ToolCalls    []toolCall
	FinishReason string
}

// RouterError is a refusal by the router (or the serve behind it): the
// HTTP status and the error's message and type from the body. It carries
// no credential.
type RouterError struct {
	Status  int
	Type    string
	Message string
}

func (e *RouterError) Error() string {
	if e.Status == 0 {
		return "the model stream failed: " + e.Message
	}
	t := ""
	if e.Type != "" {
		t = " " + e.Type
	}
	return fmt.Sprintf("the router answered %d%s: %s", e.Status, t, e.Message)
}

// streamHandler receives the deltas of a stream as they arrive.
type streamHandler struct {
	text    func(string)
	thought func(string)
}

// chat streams one chat completion. The request ends with ctx: cancelling
// it closes the connection, which the router passes on to the serve.
func (r *Router) chat(ctx context.Context, model string, msgs []chatMessage, tools []toolSpec, h streamHandler) (*completion, error) {
	body := map[string]any{"model": model, "messages": msgs, "stream": true}
	if len(tools) > 0 {
		body["tools"] = tools
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.BaseURL, "/")+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	r.authorize(req)
	resp, err := r.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the router is unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readRouterError(resp)
	}
	return readStream(ctx, resp.Body, h)
}

func (r *Router) authorize(req *http.Request) {
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	if r.Key != "" {
		if r.Token == "" {
			req.Header.Set("Authorization", "Bearer "+r.Key)
		} else {
			req.Header.Set("x-api-key", r.Key)
		}
	}
}

// models returns the aliases the router lists for this caller.
func (r *Router) models(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(r.BaseURL, "/")+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	r.authorize(req)
	resp, err := r.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the router is unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readRouterError(resp)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("reading the model list: %w", err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// errorBody is the OpenAI error envelope (also used in-band in streams).
type errorBody struct {
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

func readRouterError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &RouterError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
		e.Message, e.Type = eb.Error.Message, eb.Error.Type
	}
	return e
}

// streamChunk is the part of an OpenAI stream chunk the agent reads.
// Reasoning arrives as reasoning_content (OpenAI-style serves, DeepSeek)
// or reasoning (vLLM's reasoning parsers).
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
			ToolCalls        []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

// readStream reads an SSE chat stream to [DONE]. A stream that ends
// without a finish reason is an error: a cut stream must not pass as a
// finished answer.
func readStream(ctx context.Context, body io.Reader, h streamHandler) (*completion, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var out completion
	var text strings.Builder
	byIndex := map[int]*toolCall{}
	var order []int
	done := false
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			done = true
			break
		}
		var ch streamChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return nil, &RouterError{Message: "a stream chunk is not JSON"}
		}
		if ch.Error != nil {
			return nil, &RouterError{Type: ch.Error.Type, Message: ch.Error.Message}
		}
		for _, c := range ch.Choices {
			d := c.Delta
			if r := d.ReasoningContent + d.Reasoning; r != "" && h.thought != nil {
				h.thought(r)
			}
			if d.Content != "" {
				text.WriteString(d.Content)
				if h.text != nil {
					h.text(d.Content)
				}
			}
			for _, tc := range d.ToolCalls {
				cur := byIndex[tc.Index]
				if cur == nil {
					cur = &toolCall{Type: "function"}
					byIndex[tc.Index] = cur
					order = append(order, tc.Index)
				}
				if tc.ID != "" {
					cur.ID = tc.ID
				}
				cur.Function.Name += tc.Function.Name
				cur.Function.Arguments += tc.Function.Arguments
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				out.FinishReason = *c.FinishReason
			}
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &RouterError{Message: "reading the stream: " + err.Error()}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if out.FinishReason == "" && !done {
		return nil, &RouterError{Message: "the stream ended before the answer was finished"}
	}
	out.Text = text.String()
	for i, idx := range order {
		tc := byIndex[idx]
		if tc.ID == "" {
			tc.ID = fmt.Sprintf("call_%d", i)
		}
		out.ToolCalls = append(out.ToolCalls, *tc)
	}
	return &out, nil
}
