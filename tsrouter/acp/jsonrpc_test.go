package acp

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// rawPeer drives a conn with raw lines and reads its raw answers.
func rawPeer(t *testing.T, h handler) (send func(string), recv func() message) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := newConn(inR, outW, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { defer close(done); c.serve(t.Context(), h); outW.Close() }()
	t.Cleanup(func() { inW.Close(); <-done })
	sc := bufio.NewScanner(outR)
	sc.Buffer(nil, 1<<20)
	lines := make(chan string, 16)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	send = func(s string) { io.WriteString(inW, s+"\n") }
	recv = func() message {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the connection closed")
			}
			var m message
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not JSON on the wire: %q", l)
			}
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
		return message{}
	}
	return send, recv
}

func TestConnErrors(t *testing.T) {
	echo := func(ctx context.Context, method string, params json.RawMessage) (any, error) {
		if method == "echo" {
			return params, nil
		}
		return nil, rpcErr(codeMethodNotFound, "no %s", method)
	}
	cases := []struct {
		name string
		line string
		id   string
		code int
	}{
		{"not JSON", `hello`, "null", codeParseError},
		{"truncated", `{"jsonrpc":"2.0","id":1,"method":`, "null", codeParseError},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"echo"}]`, "null", codeInvalidRequest},
		{"wrong version", `{"jsonrpc":"1.0","id":2,"method":"echo"}`, "2", codeInvalidRequest},
		{"no method", `{"jsonrpc":"2.0","id":3}`, "3", codeInvalidRequest},
		{"unknown method", `{"jsonrpc":"2.0","id":"x","method":"nope"}`, `"x"`, codeMethodNotFound},
	}
	send, recv := rawPeer(t, echo)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send(tc.line)
			m := recv()
			if m.Error == nil || m.Error.Code != tc.code || string(m.ID) != tc.id {
				t.Fatalf("answer %+v (error %+v), want code %d id %s", m, m.Error, tc.code, tc.id)
			}
		})
	}
	// The connection still works after all of that.
	send(`{"jsonrpc":"2.0","id":9,"method":"echo","params":{"a":1}}`)
	if m := recv(); string(m.ID) != "9" || string(m.Result) != `{"a":1}` {
		t.Fatalf("echo after errors: %+v", m)
	}
	// Notifications get no answer, even for unknown methods.
	send(`{"jsonrpc":"2.0","method":"nope"}`)
	send(`{"jsonrpc":"2.0","id":10,"method":"echo","params":1}`)
	if m := recv(); string(m.ID) != "10" {
		t.Fatalf("a notification was answered: %+v", m)
	}
}

// A slow request must not hold up the others: a prompt turn runs while
// session/cancel and the answers to the agent's own requests arrive.
func TestConnConcurrentRequests(t *testing.T) {
	release := make(chan struct{})
	h := func(ctx context.Context, method string, params json.RawMessage) (any, error) {
		if method == "slow" {
			<-release
		}
		return method, nil
	}
	send, recv := rawPeer(t, h)
	send(`{"jsonrpc":"2.0","id":1,"method":"slow"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"fast"}`)
	if m := recv(); string(m.ID) != "2" {
		t.Fatalf("first answer %+v, want the fast one", m)
	}
	close(release)
	if m := recv(); string(m.ID) != "1" {
		t.Fatalf("second answer %+v, want the slow one", m)
	}
}

func TestConnCall(t *testing.T) {
	aR, aW := io.Pipe()
	bR, bW := io.Pipe()
	agent := newConn(aR, bW, slog.New(slog.DiscardHandler))
	editor := newConn(bR, aW, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go agent.serve(ctx, func(context.Context, string, json.RawMessage) (any, error) { return nil, nil })
	go editor.serve(ctx, func(_ context.Context, method string, p json.RawMessage) (any, error) {
		if method == "fail" {
			return nil, rpcErr(codeInvalidParams, "bad")
		}
		return map[string]string{"got": method + string(p)}, nil
	})
	var out map[string]string
	if err := agent.call(t.Context(), "fs/read_text_file", 7, &out); err != nil || out["got"] != "fs/read_text_file7" {
		t.Fatalf("call: %v %v", out, err)
	}
	err := agent.call(t.Context(), "fail", nil, nil)
	if re, ok := err.(*RPCError); !ok || re.Code != codeInvalidParams {
		t.Fatalf("error answer: %v", err)
	}
	short, stop := context.WithTimeout(t.Context(), time.Millisecond)
	defer stop()
	bW.Close() // the editor never sees the request now
	if err := agent.call(short, "x", nil, nil); err == nil {
		t.Fatal("a call without an answer returned nil")
	}
}

func TestReadLineLimit(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	br := bufio.NewReaderSize(strings.NewReader(long+"\n{}\n"), 64<<10)
	if _, err := readLine(br); err != errLineTooLong {
		t.Fatalf("long line: %v", err)
	}
	if l, err := readLine(br); err != nil || string(l) != "{}" {
		t.Fatalf("the line after: %q %v", l, err)
	}
}
