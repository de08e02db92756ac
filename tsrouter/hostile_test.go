package tsrouter_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter"
)

// serveLikeProduction serves h with the listeners' own http.Server
// settings on a loopback socket (httptest.NewServer would use defaults).
func serveLikeProduction(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := tsrouter.NewHTTPServer(h, slog.New(slog.DiscardHandler))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// trickle opens a connection that sends a chat request's headers and then
// one body byte every pace, until stop is closed; it returns what the
// router answered (or "" if nothing).
func trickle(t *testing.T, addr string, declared int, pace time.Duration, stop <-chan struct{}) <-chan string {
	out := make(chan string, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		out <- ""
		return out
	}
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", declared)
	go func() {
		defer c.Close()
		answer := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(c)
			answer <- string(b)
		}()
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for {
			select {
			case a := <-answer:
				out <- a
				return
			case <-stop:
				c.Close()
				out <- <-answer
				return
			case <-tick.C:
				c.Write([]byte(" "))
			}
		}
	}()
	return out
}

// TestTricklingCallersStarveNobody: connections that send their body one
// byte at a time hold no slot while they do, so others are served, the
// management endpoints answer, and the tricklers are cut with 408 once
// they fall below the minimum rate.
func TestTricklingCallersStarveNobody(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, oneTier(url, ""), routerOpts{slots: 4, bodyGrace: 300 * time.Millisecond, minBodyRate: 1 << 10}, nil)
	addr := serveLikeProduction(t, h)
	stop := make(chan struct{})
	var answers []<-chan string
	for range 16 {
		answers = append(answers, trickle(t, addr, 1000, 50*time.Millisecond, stop))
	}
	time.Sleep(100 * time.Millisecond) // every trickler is in, sending
	for _, path := range []string{"/v1/chat/completions", "/metrics", "/health"} {
		var resp *http.Response
		var err error
		if path == "/v1/chat/completions" {
			resp, err = http.Post("http://"+addr+path, "application/json", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		} else {
			resp, err = http.Get("http://" + addr + path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Errorf("%s while 16 callers trickle into 4 slots: %d %s", path, resp.StatusCode, body)
		}
	}
	// Below 1 KiB/s after the 300 ms grace: 408 and closed.
	deadline := time.After(10 * time.Second)
	for i, a := range answers {
		select {
		case got := <-a:
			if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "request_timeout") || !strings.Contains(got, "Connection: close") {
				t.Errorf("trickler %d got %q", i, got)
			}
		case <-deadline:
			close(stop)
			t.Fatalf("trickler %d was never cut", i)
		}
	}
}

// TestBodyMemoryFollowsBytesReceived: callers declaring 32 MiB bodies and
// sending a few bytes cost memory for what they sent, not what they
// declared (64 such callers once took 2 GB).
func TestBodyMemoryFollowsBytesReceived(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, oneTier(url, ""), routerOpts{}, nil)
	addr := serveLikeProduction(t, h)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	var answers []<-chan string
	for range 32 {
		answers = append(answers, trickle(t, addr, 32<<20, 100*time.Millisecond, stop))
	}
	time.Sleep(500 * time.Millisecond)
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	close(stop)
	for _, a := range answers {
		<-a
	}
	grown := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	// 32 × 32 MiB would be 1 GiB; a first buffer each is 2 MiB.
	if grown > 64<<20 {
		t.Errorf("heap grew %d MiB for 32 callers that sent a few bytes each", grown>>20)
	}
}

// TestOversizeBodyIsAnswered: a client that writes its whole over-size
// body before reading (as many HTTP clients do) reads the 413, not a
// reset connection.
func TestOversizeBodyIsAnswered(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, oneTier(url, ""), routerOpts{maxBody: 1 << 20}, nil)
	addr := serveLikeProduction(t, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := bytes.Repeat([]byte("a"), 8<<20)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil {
		t.Fatalf("writing the body: %v (the router reset the connection)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if got := readAll(t, resp); resp.StatusCode != 413 || !strings.Contains(got, "payload_too_large") {
		t.Errorf("%d %s", resp.StatusCode, got)
	}
}

// TestHTTPEdges: OPTIONS * reaches the router (authenticated, audited, not
// net/http's silent 200); a chunked request closes its connection after
// the answer, so bytes after the body are never served as a request.
func TestHTTPEdges(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, oneTier(url, ""), routerOpts{token: routerToken}, nil)
	addr := serveLikeProduction(t, h)
	exchange := func(raw string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := exchange("OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 401") {
		t.Errorf("OPTIONS * without the token: %q", got)
	}
	got := exchange("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + routerToken +
		"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + routerToken + "\r\n\r\n")
	if n := strings.Count(got, "HTTP/1.1 "); n != 1 || !strings.Contains(got, "Connection: close") {
		t.Errorf("a smuggled request was served (%d answers): %q", n, got)
	}
	// Refused before authentication too.
	got = exchange("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + routerToken + "\r\n\r\n")
	if n := strings.Count(got, "HTTP/1.1 "); n != 1 || !strings.HasPrefix(got, "HTTP/1.1 401") {
		t.Errorf("a smuggled request after a refusal was served (%d answers): %q", n, got)
	}
}

// TestStalledReaderIsCut: a caller that stops reading a stream is cut
// after the write stall as its own fault, and the serve's request is
// cancelled; the slot and lease come back.
func TestStalledReaderIsCut(t *testing.T) {
	// A long, fast stream: enough bytes to fill the socket buffers.
	deltas := make([]string, 20000)
	for i := range deltas {
		deltas[i] = strings.Repeat("x", 512)
	}
	fake, url := startFake(t, fakeserve.Options{Deltas: deltas})
	var logs syncBuffer
	h := newHandler(t, oneTier(url, ""), routerOpts{writeStall: 300 * time.Millisecond},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	addr := serveLikeProduction(t, h)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// Never read. The router must give up on its own.
	if err := fake.WaitCancelled(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "caller stopped reading") {
		if time.Now().After(deadline) {
			t.Fatalf("no client_stalled audit line: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "serve silent") {
		t.Errorf("the serve was blamed: %s", logs.String())
	}
}

// TestPausingReaderDoesNotBlameTheServe: a caller that pauses reading for
// longer than the tier's relay timeout (but less than the write stall)
// gets its whole stream when it resumes: the serve's silence timer does
// not run while the router waits on the caller.
func TestPausingReaderDoesNotBlameTheServe(t *testing.T) {
	deltas := make([]string, 40000)
	for i := range deltas {
		deltas[i] = strings.Repeat("y", 512)
	}
	_, url := startFake(t, fakeserve.Options{Deltas: deltas})
	// The default 2 s relay timeout. With 1 s the stream once ended before
	// its first KiB in a cold CI run under -race on two cores: most likely
	// a scheduling gap of the serve itself, which this test is not about.
	cfg := oneTier(url, "")
	var logs syncBuffer
	h := newHandler(t, cfg, routerOpts{writeStall: 10 * time.Second}, slog.New(slog.NewJSONHandler(&logs, nil)))
	addr := serveLikeProduction(t, h)
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d\naudit: %s", resp.StatusCode, logs.String())
	}
	first := make([]byte, 1024)
	if n, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("%v after %q\naudit: %s", err, first[:n], logs.String())
	}
	time.Sleep(5 * time.Second) // two relay timeouts and more
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%v\naudit: %s", err, logs.String())
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream did not end cleanly after the pause: …%q\naudit: %s", rest[max(0, len(rest)-200):], logs.String())
	}
}

// TestOneCallerCannotTakeEverySlot: a caller's requests in flight are
// capped (its key's max_concurrency here; the share by default), so others
// keep being served while it saturates its own share.
func TestOneCallerCannotTakeEverySlot(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Mode: fakeserve.ModeHang})
	cfg := keysConfig(url, "permissive") + `
[[api_keys.api_keys]]
key = "sk-greedy-0123456789abcdef"
id = "key-greedy"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
max_concurrency = 2
`
	base := startRouter(t, cfg, routerOpts{slots: 8, env: map[string]string{"PARTNER_KEY": partnerKey}})
	greedy := []string{"Authorization", "Bearer sk-greedy-0123456789abcdef"}
	for range 2 {
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"model":"chat"}`))
			req.Header.Set(greedy[0], greedy[1])
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	for fake.Stats().InFlight < 2 {
		select {
		case <-t.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`, greedy...)
	body := readAll(t, resp)
	if resp.StatusCode != 429 || !strings.Contains(body, "concurrency_limit_exceeded") || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("the key's third request: %d %s (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	// Another caller is served meanwhile.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+partnerKey)
	other, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, other); other.StatusCode != 200 {
		t.Errorf("another caller: %d", other.StatusCode)
	}
}

// TestCarelessInputIsRefused: what careless or hostile callers send the
// handlers refuse with a clear 400 (or hide behind a 500 without paths).
func TestCarelessInputIsRefused(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, `max_output_tokens = 100`), routerOpts{token: routerToken, adminToken: "admin-0123456789abcdef"})
	auth := []string{"Authorization", "Bearer " + routerToken}
	msg := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, path, body string
		want             int
		wantIn           string
	}{
		{"case variant of model", "/v1/chat/completions", `{"model":"chat","Model":"other",` + msg + `}`, 400, "case variant"},
		{"case variant on messages", "/v1/messages", `{"model":"chat","max_tokens":8,"MAX_TOKENS":99999,` + msg + `}`, 400, "case variant"},
		{"duplicate key on messages", "/v1/messages", `{"model":"chat","max_tokens":8,"max_tokens":99999,` + msg + `}`, 400, "duplicate"},
		{"budget as a string", "/v1/chat/completions", `{"model":"chat","max_tokens":"5000",` + msg + `}`, 400, "max_tokens must be an integer"},
		{"budget negative", "/v1/chat/completions", `{"model":"chat","max_tokens":-1,` + msg + `}`, 400, "must not be negative"},
		{"budget in exponent form is clamped", "/v1/chat/completions", `{"model":"chat","max_tokens":5e3,` + msg + `}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+tc.path, tc.body, auth...)
			body := readAll(t, resp)
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.wantIn) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, body, tc.want, tc.wantIn)
			}
			if tc.want == 200 && resp.Header.Get("X-Anvil-Max-Tokens-Applied") != "100" {
				t.Errorf("no clamp: %v", resp.Header)
			}
		})
	}
	// Admin bodies with data after the object are refused.
	keyed := startRouter(t, keysConfig(url, "permissive"), routerOpts{token: routerToken, adminToken: "admin-0123456789abcdef", env: map[string]string{"PARTNER_KEY": partnerKey}})
	resp := post(t, t.Context(), keyed+"/admin/api-keys", `{"id":"k1","user_id":"u","organization_id":"o","scopes":["read"]} {"id":"k2"}`,
		"Authorization", "Bearer "+routerToken, "X-Admin-Token", "admin-0123456789abcdef")
	if body := readAll(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "data after the JSON object") {
		t.Errorf("trailing data: %d %s", resp.StatusCode, body)
	}
}

// TestTranslationRefusalsNameTheField: a 400 from a translation names the
// offending field (never the value), and the audit line says the same.
func TestTranslationRefusalsNameTheField(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	var logs syncBuffer
	h := newHandler(t, oneTier(url, ""), routerOpts{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	addr := serveLikeProduction(t, h)
	tests := []struct{ name, path, body, field string }{
		{"messages not a list", "/v1/messages", `{"model":"chat","max_tokens":8,"messages":"secret-text-here"}`, "messages"},
		{"max_tokens missing", "/v1/messages", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"responses input wrong type", "/v1/responses", `{"model":"chat","input":42}`, "input"},
		{"responses unsupported feature", "/v1/responses", `{"model":"chat","input":"hi","previous_response_id":"resp_1"}`, "previous_response_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post("http://"+addr+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != 400 || !strings.Contains(body, tc.field) || strings.Contains(body, "secret-text-here") {
				t.Errorf("%d %s: want a 400 naming %s", resp.StatusCode, body, tc.field)
			}
		})
	}
	details := regexp.MustCompile(`"detail":"([^"]*)"`).FindAllStringSubmatch(logs.String(), -1)
	for i, tc := range tests {
		if i >= len(details) || !strings.Contains(details[i][1], tc.field) {
			t.Errorf("audit detail %d does not name %s:\n%s", i, tc.field, logs.String())
		}
	}
	if strings.Contains(logs.String(), "secret-text-here") {
		t.Error("the audit line carries the caller's value")
	}
}
