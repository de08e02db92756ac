package fakeserve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// result is what a client observed for one chat request.
type result struct {
	status    int
	header    http.Header
	body      []byte  // non-stream body (or a non-SSE answer to a stream request)
	frames    []frame // SSE frames, for a 200 event-stream answer
	readErr   error   // what ended the body
	sse       bool
	transport error // Do failed (no response at all)
}

func chat(t *testing.T, c *http.Client, base, body string) result {
	t.Helper()
	resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", body, nil)
	if err != nil {
		return result{transport: err}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		r.sse = true
		r.frames, r.readErr = readFrames(t, resp.Body)
	} else {
		r.body, r.readErr = io.ReadAll(resp.Body)
	}
	return r
}

const (
	streamReq    = `{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	nonStreamReq = `{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`
)

func TestFailureModes(t *testing.T) {
	deltas := fakeserve.DefaultDeltas()
	wantVLLMError := func(status int, typ string) func(*testing.T, result) {
		return func(t *testing.T, r result) {
			t.Helper()
			if r.transport != nil || r.readErr != nil || r.status != status || r.sse {
				t.Fatalf("result = %+v, want a %d JSON error", r, status)
			}
			var e vllmError
			mustUnmarshal(t, r.body, &e)
			if e.Error.Code != status || e.Error.Type != typ || string(e.Error.Param) != "null" || e.Error.Message == "" {
				t.Errorf("error body = %s", r.body)
			}
		}
	}
	// contentOf checks that frames[1:1+n] carry the first n deltas.
	contentOf := func(t *testing.T, frames []frame, n int) {
		t.Helper()
		if len(frames) < n+1 {
			t.Fatalf("only %d frames: %q", len(frames), datas(frames))
		}
		if d := parseChunk(t, frames[0].data).Choices[0].Delta; d.Role == nil {
			t.Errorf("first frame is not the role chunk: %s", frames[0].data)
		}
		for i := range n {
			d := parseChunk(t, frames[1+i].data).Choices[0].Delta
			if d.Content == nil || *d.Content != deltas[i] {
				t.Errorf("frame %d = %s, want delta %q", 1+i, frames[1+i].data, deltas[i])
			}
		}
	}
	wantStats := func(t *testing.T, s *fakeserve.Server, completed, aborted int64) {
		t.Helper()
		waitFor(t, "request accounted", func() bool { return s.Stats().InFlight == 0 })
		st := s.Stats()
		if st.Requests != 1 || st.Completed != completed || st.Aborted != aborted || st.Cancelled != 0 {
			t.Errorf("stats = %+v, want completed %d aborted %d", st, completed, aborted)
		}
	}

	tests := []struct {
		name     string
		opts     fakeserve.Options
		body     string
		check    func(*testing.T, result)
		complete bool // counted as Completed (else Aborted)
	}{
		{name: "503 stream", opts: fakeserve.Options{Mode: fakeserve.ModeStatus503}, body: streamReq,
			check: wantVLLMError(503, "ServiceUnavailableError"), complete: true},
		{name: "503 non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeStatus503}, body: nonStreamReq,
			check: wantVLLMError(503, "ServiceUnavailableError"), complete: true},
		{name: "400 context length", opts: fakeserve.Options{Mode: fakeserve.ModeStatus400}, body: streamReq, complete: true,
			check: func(t *testing.T, r result) {
				wantVLLMError(400, "BadRequestError")(t, r)
				if !strings.Contains(string(r.body), "This model's maximum context length is 4096 tokens") {
					t.Errorf("400 body = %s", r.body)
				}
			}},
		{name: "500", opts: fakeserve.Options{Mode: fakeserve.ModeStatus500}, body: nonStreamReq,
			check: wantVLLMError(500, "InternalServerError"), complete: true},
		{name: "cut stream", opts: fakeserve.Options{Mode: fakeserve.ModeCut}, body: streamReq,
			check: func(t *testing.T, r result) {
				if r.status != 200 || !r.sse {
					t.Fatalf("result = %+v", r)
				}
				if !isReadFailure(r.readErr) {
					t.Errorf("stream ended with %v, want an abrupt end", r.readErr)
				}
				if len(r.frames) != 1+fakeserve.DefaultCutAfter {
					t.Errorf("frames = %q, want role + %d deltas", datas(r.frames), fakeserve.DefaultCutAfter)
				}
				contentOf(t, r.frames, fakeserve.DefaultCutAfter)
			}},
		{name: "cut stream after 4", opts: fakeserve.Options{Mode: fakeserve.ModeCut, CutAfter: 4}, body: streamReq,
			check: func(t *testing.T, r result) {
				if !isReadFailure(r.readErr) || len(r.frames) != 5 {
					t.Errorf("frames = %q, err %v", datas(r.frames), r.readErr)
				}
				contentOf(t, r.frames, 4)
			}},
		{name: "cut stream after none", opts: fakeserve.Options{Mode: fakeserve.ModeCut, CutAfter: -1}, body: streamReq,
			check: func(t *testing.T, r result) {
				if !isReadFailure(r.readErr) || len(r.frames) != 1 {
					t.Errorf("frames = %q, err %v", datas(r.frames), r.readErr)
				}
				contentOf(t, r.frames, 0)
			}},
		{name: "cut stream beyond the end", opts: fakeserve.Options{Mode: fakeserve.ModeCut, CutAfter: 100}, body: streamReq,
			check: func(t *testing.T, r result) {
				if !isReadFailure(r.readErr) || len(r.frames) != 1+len(deltas) {
					t.Errorf("frames = %q, err %v", datas(r.frames), r.readErr)
				}
				contentOf(t, r.frames, len(deltas)) // no finish chunk, no [DONE]
			}},
		{name: "cut non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeCut}, body: nonStreamReq,
			check: func(t *testing.T, r result) {
				if r.transport != nil {
					t.Fatalf("transport error %v, want headers then a cut body", r.transport)
				}
				if r.status != 200 || !errors.Is(r.readErr, io.ErrUnexpectedEOF) || len(r.body) == 0 || json.Valid(r.body) {
					t.Errorf("status %d, body %q, err %v", r.status, r.body, r.readErr)
				}
			}},
		{name: "inband-error stream", opts: fakeserve.Options{Mode: fakeserve.ModeInbandError}, body: streamReq, complete: true,
			check: func(t *testing.T, r result) {
				if r.status != 200 || !r.sse || r.readErr != nil || len(r.frames) != 2 || r.frames[1].data != "[DONE]" {
					t.Fatalf("result = %+v frames %q", r, datas(r.frames))
				}
				e := parseChunk(t, r.frames[0].data).Error
				if e == nil || e.Object != "error" || e.Code != 503 || e.Type != "ServiceUnavailableError" || e.Message == "" {
					t.Errorf("first event = %s", r.frames[0].data)
				}
			}},
		{name: "inband-error non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeInbandError}, body: nonStreamReq, complete: true,
			check: func(t *testing.T, r result) {
				var e struct {
					Object string `json:"object"`
					Type   string `json:"type"`
					Code   int    `json:"code"`
				}
				mustUnmarshal(t, r.body, &e)
				if r.status != 503 || e.Object != "error" || e.Code != 503 || e.Type != "ServiceUnavailableError" {
					t.Errorf("status %d body %s", r.status, r.body)
				}
			}},
		{name: "midstream-error stream", opts: fakeserve.Options{Mode: fakeserve.ModeMidstreamError}, body: streamReq, complete: true,
			check: func(t *testing.T, r result) {
				n := fakeserve.DefaultCutAfter
				if r.status != 200 || r.readErr != nil || len(r.frames) != n+3 {
					t.Fatalf("result %+v frames %q", r, datas(r.frames))
				}
				contentOf(t, r.frames, n)
				var e vllmError
				mustUnmarshal(t, []byte(r.frames[n+1].data), &e)
				if e.Error.Code != 500 || e.Error.Type != "InternalServerError" || string(e.Error.Param) != "null" {
					t.Errorf("error frame = %s", r.frames[n+1].data)
				}
				if r.frames[n+2].data != "[DONE]" {
					t.Errorf("last frame = %s", r.frames[n+2].data)
				}
			}},
		{name: "midstream-error non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeMidstreamError}, body: nonStreamReq,
			check: wantVLLMError(500, "InternalServerError"), complete: true},
		{name: "malformed stream", opts: fakeserve.Options{Mode: fakeserve.ModeMalformed}, body: streamReq, complete: true,
			check: func(t *testing.T, r result) {
				if r.status != 200 || r.readErr != nil || len(r.frames) != len(deltas)+4 {
					t.Fatalf("result %+v frames %q", r, datas(r.frames))
				}
				var bad []int
				var content strings.Builder
				for i, f := range r.frames[:len(r.frames)-1] {
					if !json.Valid([]byte(f.data)) {
						bad = append(bad, i)
						continue
					}
					if ch := parseChunk(t, f.data); len(ch.Choices) == 1 && ch.Choices[0].Delta.Content != nil {
						content.WriteString(*ch.Choices[0].Delta.Content)
					}
				}
				if len(bad) != 1 || bad[0] <= 1 || bad[0] >= len(r.frames)-2 {
					t.Errorf("invalid frames at %v, want one in the middle: %q", bad, datas(r.frames))
				}
				if content.String() != strings.Join(deltas, "") || r.frames[len(r.frames)-1].data != "[DONE]" {
					t.Errorf("content %q, frames %q", content.String(), datas(r.frames))
				}
			}},
		{name: "malformed non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeMalformed}, body: nonStreamReq, complete: true,
			check: func(t *testing.T, r result) {
				if r.status != 200 || r.readErr != nil || len(r.body) == 0 || json.Valid(r.body) {
					t.Errorf("status %d body %q err %v", r.status, r.body, r.readErr)
				}
			}},
		{name: "no-done non-stream is normal", opts: fakeserve.Options{Mode: fakeserve.ModeNoDone}, body: nonStreamReq, complete: true,
			check: func(t *testing.T, r result) {
				var got completion
				mustUnmarshal(t, r.body, &got)
				if r.status != 200 || *got.Choices[0].Message.Content != strings.Join(deltas, "") {
					t.Errorf("status %d body %s", r.status, r.body)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base, c := serve(t, tt.opts)
			r := chat(t, c, base, tt.body)
			tt.check(t, r)
			if tt.complete {
				wantStats(t, s, 1, 0)
			} else {
				wantStats(t, s, 0, 1)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{Mode: fakeserve.ModeRefuse})
	for _, path := range []string{"/v1/chat/completions", "/health"} {
		method, body := http.MethodGet, ""
		if strings.HasPrefix(path, "/v1/chat") {
			method, body = http.MethodPost, streamReq
		}
		resp, err := send(t.Context(), c, method, base+path, body, nil)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s answered %d, want the connection closed", path, resp.StatusCode)
		}
	}
	if st := s.Stats(); st.Requests != 1 || st.Aborted != 1 || st.InFlight != 0 {
		t.Errorf("stats = %+v", st)
	}
	// The control endpoints stay reachable so the mode can be switched back.
	if resp, body, err := do(t, c, http.MethodPost, base+"/fake/mode", `{"mode":"ok"}`, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("switch back: %v %d %s", err, resp.StatusCode, body)
	}
	if r := chat(t, c, base, streamReq); r.transport != nil || r.status != 200 || r.readErr != nil {
		t.Errorf("after switching back: %+v", r)
	}
}

// readUntil reads n whole SSE frames from br.
func readUntil(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d frames: %v", len(out), err)
		}
		d, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
		if !ok {
			t.Fatalf("unexpected SSE line %q", line)
		}
		out = append(out, d)
		if blank, err := br.ReadString('\n'); err != nil || blank != "\n" {
			t.Fatalf("frame %q not followed by a blank line: %q, %v", d, blank, err)
		}
	}
	return out
}

func TestCancellation(t *testing.T) {
	tests := []struct {
		name string
		opts fakeserve.Options
		body string
		// ready is called once the response (if any) is in; it returns when
		// the request is at the point to cancel.
		headers bool // the response headers arrive before the cancel
		frames  int  // frames to read before cancelling
	}{
		{name: "stream during TTFT", opts: fakeserve.Options{TTFT: time.Hour}, body: streamReq, headers: true},
		{name: "stream during pace", opts: fakeserve.Options{Pace: time.Hour}, body: streamReq, headers: true, frames: 2},
		{name: "non-stream during TTFT", opts: fakeserve.Options{TTFT: time.Hour}, body: nonStreamReq},
		{name: "non-stream during generation", opts: fakeserve.Options{Pace: time.Hour}, body: nonStreamReq},
		{name: "hang stream", opts: fakeserve.Options{Mode: fakeserve.ModeHang}, body: streamReq},
		{name: "hang non-stream", opts: fakeserve.Options{Mode: fakeserve.ModeHang}, body: nonStreamReq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base, c := serve(t, tt.opts)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var wg sync.WaitGroup
			if tt.headers {
				resp, err := send(ctx, c, http.MethodPost, base+"/v1/chat/completions", tt.body, nil)
				if err != nil {
					t.Fatalf("headers did not arrive before the first token: %v", err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				if tt.frames > 0 {
					got := readUntil(t, bufio.NewReader(resp.Body), tt.frames)
					if d := parseChunk(t, got[1]).Choices[0].Delta; d.Content == nil || *d.Content != "Hello" {
						t.Errorf("frames = %q", got)
					}
				}
			} else {
				wg.Go(func() {
					resp, err := send(ctx, c, http.MethodPost, base+"/v1/chat/completions", tt.body, nil)
					if err == nil {
						resp.Body.Close()
						t.Errorf("got a response (%d), want none before the cancel", resp.StatusCode)
					}
				})
				waitFor(t, "request in flight", func() bool { return s.Stats().InFlight == 1 })
			}
			if st := s.Stats(); st.Cancelled != 0 || st.Completed != 0 {
				t.Fatalf("before cancel: %+v", st)
			}

			waitCtx, waitCancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer waitCancel()
			waited := make(chan error, 1)
			go func() { waited <- s.WaitCancelled(waitCtx, 1) }()
			select {
			case err := <-waited:
				t.Fatalf("WaitCancelled returned %v before any cancel", err)
			case <-time.After(20 * time.Millisecond):
			}

			cancel()
			if err := <-waited; err != nil {
				t.Fatalf("WaitCancelled: %v", err)
			}
			wg.Wait()
			waitFor(t, "in flight to drain", func() bool { return s.Stats().InFlight == 0 })
			if st := s.Stats(); st.Requests != 1 || st.Cancelled != 1 || st.Completed != 0 || st.Aborted != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestWaitCancelledContextDone(t *testing.T) {
	s := fakeserve.New(fakeserve.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitCancelled(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitCancelled = %v, want deadline exceeded", err)
	}
	if err := s.WaitCancelled(t.Context(), 0); err != nil {
		t.Errorf("WaitCancelled(0) = %v", err)
	}
}

func TestPacing(t *testing.T) {
	const (
		ttft = 60 * time.Millisecond
		pace = 50 * time.Millisecond
	)
	s, base, c := serve(t, fakeserve.Options{TTFT: ttft, Pace: pace})
	start := time.Now()
	resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", streamReq, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first := readUntil(t, br, 2) // role + first delta
	firstAt := time.Now()
	// The first delta is here long before the last one is produced.
	if st := s.Stats(); st.Completed != 0 || st.InFlight != 1 {
		t.Errorf("stats when the first delta arrived: %+v (the stream was buffered?)", st)
	}
	if d := parseChunk(t, first[1]).Choices[0].Delta; d.Content == nil || *d.Content != "Hello" {
		t.Fatalf("frames = %q", first)
	}
	if got := firstAt.Sub(start); got < ttft {
		t.Errorf("first delta after %v, before TTFT %v", got, ttft)
	}
	rest, err := readFrames(t, br)
	if err != nil {
		t.Fatal(err)
	}
	n := len(fakeserve.DefaultDeltas())
	if len(rest) != n-1+2 || rest[len(rest)-1].data != "[DONE]" {
		t.Fatalf("rest = %q", datas(rest))
	}
	lastAt := rest[n-2].at // the last content delta
	// The server waits at least pace between deltas; allow the client to be late.
	if gap := lastAt.Sub(firstAt); gap < time.Duration(n-1)*pace/2 {
		t.Errorf("last delta %v after the first, want about %v", gap, time.Duration(n-1)*pace)
	}
	for i := 1; i < n-1; i++ {
		if rest[i].at.Before(rest[i-1].at) {
			t.Errorf("frame %d arrived before frame %d", i, i-1)
		}
	}
}

func TestNonStreamTakesGenerationTime(t *testing.T) {
	const ttft, pace = 30 * time.Millisecond, 10 * time.Millisecond
	_, base, c := serve(t, fakeserve.Options{TTFT: ttft, Pace: pace})
	start := time.Now()
	r := chat(t, c, base, nonStreamReq)
	if r.status != 200 || r.readErr != nil {
		t.Fatalf("%+v", r)
	}
	if got, want := time.Since(start), ttft+5*pace; got < want {
		t.Errorf("answered after %v, want at least %v", got, want)
	}
}

func TestStopEndsHangingRequests(t *testing.T) {
	s, base, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Mode: fakeserve.ModeHang})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := &http.Client{Transport: &http.Transport{}}
	errc := make(chan error, 1)
	go func() {
		resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", streamReq, nil)
		if err == nil {
			resp.Body.Close()
			err = errors.New("got a response: " + resp.Status)
		} else {
			err = nil
		}
		errc <- err
	}()
	waitFor(t, "request in flight", func() bool { return s.Stats().InFlight == 1 })
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
	if err := <-errc; err != nil {
		t.Errorf("hanging client: %v, want a dropped connection", err)
	}
	stop() // idempotent
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("server still answers after stop")
	}
}

func TestStartStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	_, base, stop, err := fakeserve.Start(ctx, ":0", fakeserve.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("base URL = %q", base)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, _, err := do(t, c, http.MethodGet, base+"/health", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v", err)
	}
	cancel()
	waitFor(t, "server to stop", func() bool {
		resp, err := send(t.Context(), c, http.MethodGet, base+"/health", "", nil)
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
}

func TestLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr    string
		want    string // normalized; "" means refused
		listens bool
	}{
		{addr: "127.0.0.1:0", want: "127.0.0.1:0", listens: true},
		{addr: ":0", want: "127.0.0.1:0", listens: true},
		{addr: "localhost:0", want: "127.0.0.1:0", listens: true},
		{addr: "127.0.0.1:8001", want: "127.0.0.1:8001"},
		{addr: "[::1]:8001", want: "[::1]:8001"},
		{addr: "0.0.0.0:0"},
		{addr: "[::]:0"},
		{addr: "192.168.1.10:8001"},
		{addr: "10.0.0.1:0"},
		{addr: "example.com:80"},
		{addr: "127.0.0.1"}, // no port
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := fakeserve.LoopbackAddr(tt.addr)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("LoopbackAddr(%q) = %q, want an error", tt.addr, got)
				}
				_, _, _, err := fakeserve.Start(t.Context(), tt.addr, fakeserve.Options{})
				if err == nil || !strings.Contains(err.Error(), "fakeserve:") {
					t.Errorf("Start(%q) error = %v, want a refusal", tt.addr, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LoopbackAddr(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
			}
			if tt.listens {
				_, base, stop, err := fakeserve.Start(t.Context(), tt.addr, fakeserve.Options{})
				if err != nil {
					t.Fatal(err)
				}
				stop()
				if !strings.HasPrefix(base, "http://127.0.0.1:") {
					t.Errorf("base = %q", base)
				}
			}
		})
	}
}

func TestUnusedLoopbackAddr(t *testing.T) {
	addr, err := fakeserve.UnusedLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("addr = %q (%v)", addr, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	if err == nil {
		conn.Close()
		t.Fatalf("dial %s succeeded, want connection refused", addr)
	}
}

func TestControlEndpoints(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string
		wantMode   fakeserve.Mode
	}{
		{name: "get mode", method: "GET", path: "/fake/mode", wantStatus: 200, wantBody: `{"mode":"ok"}`, wantMode: fakeserve.ModeOK},
		{name: "set 503", method: "POST", path: "/fake/mode", body: `{"mode":"503"}`, wantStatus: 200, wantBody: `{"mode":"503"}`, wantMode: fakeserve.ModeStatus503},
		{name: "set unknown", method: "POST", path: "/fake/mode", body: `{"mode":"explode"}`, wantStatus: 400, wantMode: fakeserve.ModeStatus503},
		{name: "set bad JSON", method: "POST", path: "/fake/mode", body: `{`, wantStatus: 400, wantMode: fakeserve.ModeStatus503},
		{name: "set cut", method: "POST", path: "/fake/mode", body: `{"mode":"cut"}`, wantStatus: 200, wantBody: `{"mode":"cut"}`, wantMode: fakeserve.ModeCut},
		{name: "stats", method: "GET", path: "/fake/stats", wantStatus: 200,
			wantBody: `{"requests":0,"in_flight":0,"cancelled":0,"completed":0,"aborted":0}`, wantMode: fakeserve.ModeCut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, err := do(t, c, tt.method, base+tt.path, tt.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || (tt.wantBody != "" && string(body) != tt.wantBody) {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if m := s.Mode(); m != tt.wantMode {
				t.Errorf("mode = %q, want %q", m, tt.wantMode)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range fakeserve.Modes() {
		if got, err := fakeserve.ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if got, err := fakeserve.ParseMode(""); err != nil || got != fakeserve.ModeOK {
		t.Errorf(`ParseMode("") = %q, %v`, got, err)
	}
	if _, err := fakeserve.ParseMode("OK "); err == nil {
		t.Error("ParseMode accepted a bad name")
	}
}

func TestSetOptionsAndLastRequest(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{})
	if got := s.LastRequest(); got.Path != "" || got.Body != nil {
		t.Errorf("LastRequest before any = %+v", got)
	}
	s.SetOptions(func(o *fakeserve.Options) {
		if o.Model != fakeserve.DefaultModel || len(o.Deltas) != 6 || o.Mode != fakeserve.ModeOK || o.CutAfter != 2 {
			t.Errorf("SetOptions sees %+v, want defaults filled in", *o)
		}
		o.Model = "m2"
		o.Deltas = []string{"x", "y"}
	})
	body := `{"model":"m2","messages":[{"role":"user","content":"hello"}]}`
	resp, data, err := do(t, c, http.MethodPost, base+"/v1/chat/completions", body, map[string]string{"X-Trace": "abc"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %d %s", err, resp.StatusCode, data)
	}
	var got completion
	mustUnmarshal(t, data, &got)
	if got.Model != "m2" || *got.Choices[0].Message.Content != "xy" {
		t.Errorf("answer = %s", data)
	}
	last := s.LastRequest()
	if last.Path != "/v1/chat/completions" || string(last.Body) != body || last.Header.Get("X-Trace") != "abc" {
		t.Errorf("LastRequest = %+v", last)
	}
	last.Header.Set("X-Trace", "changed") // a copy
	last.Body[0] = 'X'
	if again := s.LastRequest(); again.Header.Get("X-Trace") != "abc" || again.Body[0] != '{' {
		t.Error("LastRequest returned shared state")
	}

	s.SetOptions(func(o *fakeserve.Options) { o.Mode = fakeserve.ModeStatus500 })
	if s.Mode() != fakeserve.ModeStatus500 || s.Options().Mode != fakeserve.ModeStatus500 {
		t.Errorf("mode = %q", s.Mode())
	}
	if r := chat(t, c, base, `{"model":"m2"}`); r.status != 500 {
		t.Errorf("status = %d", r.status)
	}
}

// TestConcurrentStreams runs many streams while the options change, for the
// race detector and the counters.
func TestConcurrentStreams(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{Deltas: []string{"a", "b"}})
	const workers, each = 8, 10
	var wg sync.WaitGroup
	stopFlip := make(chan struct{})
	var flipper sync.WaitGroup
	flipper.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopFlip:
				return
			default:
			}
			s.SetOptions(func(o *fakeserve.Options) {
				if i%2 == 0 {
					o.Deltas = []string{"c", "d", "e"}
				} else {
					o.Deltas = []string{"a", "b"}
				}
			})
			_ = s.Stats()
			_ = s.LastRequest()
			time.Sleep(time.Millisecond)
		}
	})
	for range workers {
		wg.Go(func() {
			for range each {
				r := chat(t, c, base, streamReq)
				if r.status != 200 || r.readErr != nil {
					t.Errorf("result %+v", r)
					return
				}
				var content strings.Builder
				for _, f := range r.frames[:len(r.frames)-1] {
					if ch := parseChunk(t, f.data); len(ch.Choices) == 1 && ch.Choices[0].Delta.Content != nil {
						content.WriteString(*ch.Choices[0].Delta.Content)
					}
				}
				if got := content.String(); got != "ab" && got != "cde" {
					t.Errorf("content %q mixes two option sets", got)
				}
			}
		})
	}
	wg.Wait()
	close(stopFlip)
	flipper.Wait()
	waitFor(t, "drain", func() bool { return s.Stats().InFlight == 0 })
	if st := s.Stats(); st.Requests != workers*each || st.Completed != workers*each {
		t.Errorf("stats = %+v", st)
	}
}
