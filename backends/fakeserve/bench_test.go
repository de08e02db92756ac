package fakeserve_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// discardWriter is a minimal flushable ResponseWriter, so the handler
// benchmarks measure the serve alone.
type discardWriter struct {
	h      http.Header
	n      int
	status int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.status = code }
func (d *discardWriter) Flush()                      {}

// rewindBody is a request body that can be replayed without allocating.
type rewindBody struct{ *bytes.Reader }

func (rewindBody) Close() error { return nil }

// benchHandler drives ServeHTTP directly on the zero-delay path.
func benchHandler(b *testing.B, payload string) {
	s := fakeserve.New(fakeserve.Options{})
	raw := []byte(payload)
	body := rewindBody{bytes.NewReader(raw)}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Body = body
	req.ContentLength = int64(len(payload))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		body.Reset(raw)
		w.status = 0
		s.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
	b.ReportMetric(float64(w.n)/float64(b.N), "resp-bytes/op")
}

// benchHTTP measures a full loopback round trip, client included.
func benchHTTP(b *testing.B, payload string) {
	_, base, stop, err := fakeserve.Start(b.Context(), "127.0.0.1:0", fakeserve.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := base + "/v1/chat/completions"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Post(url, "application/json", strings.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
	}
}

const benchPayload = `{"model":"fake-model","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello."}],"max_tokens":64`

func BenchmarkChat(b *testing.B) {
	payload := benchPayload + `}`
	b.Run("handler", func(b *testing.B) { benchHandler(b, payload) })
	b.Run("http", func(b *testing.B) { benchHTTP(b, payload) })
}

func BenchmarkChatStream(b *testing.B) {
	payload := benchPayload + `,"stream":true,"stream_options":{"include_usage":true}}`
	b.Run("handler", func(b *testing.B) { benchHandler(b, payload) })
	b.Run("http", func(b *testing.B) { benchHTTP(b, payload) })
}
