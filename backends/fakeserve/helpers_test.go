package fakeserve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// serve starts a fake serve on a free loopback port for the test's lifetime.
func serve(t *testing.T, opts fakeserve.Options) (*fakeserve.Server, string, *http.Client) {
	t.Helper()
	s, base, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		stop()
	})
	return s, base, &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// do sends a request and returns the response with its body read in full;
// readErr is the error that ended the body read, if any.
func do(t *testing.T, c *http.Client, method, url, body string, hdr map[string]string) (resp *http.Response, data []byte, readErr error) {
	t.Helper()
	resp, err := send(t.Context(), c, method, url, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, readErr = io.ReadAll(resp.Body)
	return resp, data, readErr
}

func send(ctx context.Context, c *http.Client, method, url, body string, hdr map[string]string) (*http.Response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.Do(req)
}

// frame is one SSE event as received.
type frame struct {
	data string
	at   time.Time
}

// readFrames reads SSE data frames until the body ends; err is the error that
// ended it (nil on a clean end). It fails the test on a line that is not part
// of a well-formed "data: …\n\n" frame.
func readFrames(t *testing.T, body io.Reader) (frames []frame, err error) {
	t.Helper()
	br := bufio.NewReader(body)
	var pending *frame
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				if line != "" || pending != nil {
					return frames, io.ErrUnexpectedEOF
				}
				return frames, nil
			}
			return frames, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if pending == nil {
				t.Fatalf("blank line outside a frame after %d frames", len(frames))
			}
			frames = append(frames, *pending)
			pending = nil
		case strings.HasPrefix(line, "data: "):
			if pending != nil {
				t.Fatalf("two data lines in one frame: %q", line)
			}
			pending = &frame{data: strings.TrimPrefix(line, "data: "), at: time.Now()}
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

func datas(frames []frame) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = f.data
	}
	return out
}

// chunk is the part of a chat.completion.chunk the tests look at.
type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      *string `json:"role"`
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
	Error *struct {
		Object  string `json:"object"`
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    int    `json:"code"`
	} `json:"error"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func parseChunk(t *testing.T, data string) chunk {
	t.Helper()
	var c chunk
	dec := json.NewDecoder(strings.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("chunk %q: %v", data, err)
	}
	return c
}

// completion is the part of a chat.completion the tests look at.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role             string          `json:"role"`
			Content          *string         `json:"content"`
			ReasoningContent json.RawMessage `json:"reasoning_content"`
			ToolCalls        []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

// vllmError is vLLM's nested error body.
type vllmError struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    int             `json:"code"`
	} `json:"error"`
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("unmarshal %q: %v", data, err)
	}
}

// isCompact reports whether data is already in compact JSON form.
func isCompact(data string) bool {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(data)); err != nil {
		return false
	}
	return buf.String() == data
}

// waitFor polls cond until it holds or the test context ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func isReadFailure(err error) bool {
	return err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "EOF"))
}
