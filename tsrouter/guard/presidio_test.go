package guard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// fakePresidio is a Presidio analyzer on loopback: POST /analyze answers
// with whatever answer returns for the decoded request.
type fakePresidio struct {
	*httptest.Server
	calls    atomic.Int32
	canceled atomic.Bool
	last     atomic.Value // map[string]any: the last request body
}

func startPresidio(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req map[string]any)) *fakePresidio {
	t.Helper()
	f := &fakePresidio{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/analyze" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want POST /analyze with JSON", http.StatusBadRequest)
			return
		}
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		f.last.Store(req)
		answer(w, r, req)
	}))
	t.Cleanup(f.Close)
	return f
}

// presidioAnswer answers the given JSON text.
func presidioAnswer(body string) func(http.ResponseWriter, *http.Request, map[string]any) {
	return func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

// A text with multi-byte characters before the entities, so code-point
// and byte offsets differ: "Grüße 🙂 an " is 11 code points, 16 bytes.
const presidioText = "Grüße 🙂 an Jane Doe, jane@example.com"

func TestPresidioAnalyze(t *testing.T) {
	// Code points of the entities in presidioText, as Presidio counts.
	person := `{"entity_type":"PERSON","start":11,"end":19,"score":0.85,"analysis_explanation":null,"recognition_metadata":{"recognizer_name":"SpacyRecognizer"}}`
	email := `{"entity_type":"EMAIL_ADDRESS","start":21,"end":37,"score":1.0}`
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		answer  string
		want    []guard.Span
		wantReq map[string]any
	}{
		{
			name:   "code points become byte offsets, types lower-cased, sorted by start",
			opts:   map[string]any{},
			answer: "[" + email + "," + person + "]",
			want: []guard.Span{
				{Start: 16, End: 24, Type: "person", Score: 0.85},
				{Start: 26, End: 42, Type: "email", Score: 1},
			},
			wantReq: map[string]any{"text": presidioText, "language": "en"},
		},
		{
			name:    "no entities found",
			opts:    map[string]any{},
			answer:  "[]",
			wantReq: map[string]any{"text": presidioText, "language": "en"},
		},
		{
			name:   "language, entities and score_threshold are sent",
			opts:   map[string]any{"language": "de", "entities": []any{"PERSON", "IBAN_CODE"}, "score_threshold": 0.4},
			answer: `[{"entity_type":"US_SSN","start":0,"end":1,"score":0.5},{"entity_type":"PHONE_NUMBER","start":1,"end":2,"score":0.5},{"entity_type":"CREDIT_CARD","start":2,"end":3,"score":0.5}]`,
			want: []guard.Span{
				{Start: 0, End: 1, Type: "ssn", Score: 0.5},
				{Start: 1, End: 2, Type: "phone", Score: 0.5},
				{Start: 2, End: 4, Type: "credit_card", Score: 0.5}, // "ü" is two bytes
			},
			wantReq: map[string]any{"text": presidioText, "language": "de", "entities": []any{"PERSON", "IBAN_CODE"}, "score_threshold": 0.4},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startPresidio(t, presidioAnswer(tc.answer))
			tc.opts["endpoint"] = f.URL + "/analyze"
			p, err := guard.NewPresidio(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Analyze(t.Context(), presidioText)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("spans = %+v, want %+v", got, tc.want)
			}
			for _, s := range got {
				if s.Start < 0 || s.End > len(presidioText) {
					t.Errorf("span %+v outside the text", s)
				}
			}
			if req := f.last.Load(); !reflect.DeepEqual(req, tc.wantReq) {
				t.Errorf("request = %v, want %v", req, tc.wantReq)
			}
		})
	}
	t.Run("the spans cover the entities' bytes", func(t *testing.T) {
		f := startPresidio(t, presidioAnswer("["+person+","+email+"]"))
		p, err := guard.NewPresidio(map[string]any{"endpoint": f.URL + "/analyze"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Analyze(t.Context(), presidioText)
		if err != nil {
			t.Fatal(err)
		}
		var found []string
		for _, s := range got {
			found = append(found, presidioText[s.Start:s.End])
		}
		if want := []string{"Jane Doe", "jane@example.com"}; !reflect.DeepEqual(found, want) {
			t.Errorf("spans cover %q, want %q", found, want)
		}
	})
}

func TestPresidioFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request, map[string]any)
		timeout string
		wantErr string
	}{
		{
			name: "failing analyzer",
			answer: func(w http.ResponseWriter, _ *http.Request, req map[string]any) {
				http.Error(w, "boom on "+req["text"].(string), 500)
			},
			wantErr: "status 500",
		},
		{
			name:    "slow analyzer",
			timeout: "100ms",
			answer: func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			wantErr: "no answer within 100ms",
		},
		{name: "malformed JSON", answer: presidioAnswer(`[{"entity_type":`), wantErr: "not a JSON array"},
		{name: "an object, not an array", answer: presidioAnswer(`{"error":"x"}`), wantErr: "not a JSON array"},
		{name: "missing start", answer: presidioAnswer(`[{"entity_type":"PERSON","end":3,"score":1}]`), wantErr: "lacks"},
		{name: "missing entity_type", answer: presidioAnswer(`[{"start":0,"end":3,"score":1}]`), wantErr: "lacks"},
		{name: "end past the text", answer: presidioAnswer(`[{"entity_type":"PERSON","start":30,"end":38,"score":1}]`), wantErr: "outside the text's 37 characters"},
		{name: "byte offsets, not code points", answer: presidioAnswer(`[{"entity_type":"EMAIL_ADDRESS","start":26,"end":42,"score":1}]`), wantErr: "outside"},
		{name: "negative start", answer: presidioAnswer(`[{"entity_type":"PERSON","start":-1,"end":3,"score":1}]`), wantErr: "outside"},
		{name: "empty range", answer: presidioAnswer(`[{"entity_type":"PERSON","start":3,"end":3,"score":1}]`), wantErr: "outside"},
		{name: "score above one", answer: presidioAnswer(`[{"entity_type":"PERSON","start":0,"end":3,"score":1.5}]`), wantErr: "score"},
		{name: "redirect", answer: func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
			http.Redirect(w, r, "http://127.0.0.1:1/analyze", http.StatusTemporaryRedirect)
		}, wantErr: "status 307"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startPresidio(t, tc.answer)
			opts := map[string]any{"endpoint": f.URL + "/analyze"}
			if tc.timeout != "" {
				opts["timeout"] = tc.timeout
			}
			p, err := guard.NewPresidio(opts)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			spans, err := p.Analyze(t.Context(), presidioText)
			if err == nil {
				t.Fatalf("Analyze = %+v, want an error", spans)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "presidio: ") {
				t.Errorf("error %q, want it to start with presidio: and hold %q", err, tc.wantErr)
			}
			assertNoText(t, err, presidioText, "Jane", "jane@example.com")
			if time.Since(start) > 3*time.Second {
				t.Errorf("Analyze took %v: timeout not honoured", time.Since(start))
			}
		})
	}
	t.Run("analyzer down", func(t *testing.T) {
		f := startPresidio(t, presidioAnswer("[]"))
		url := f.URL + "/analyze"
		f.Close()
		p, err := guard.NewPresidio(map[string]any{"endpoint": url})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Analyze(t.Context(), presidioText)
		if err == nil || !strings.Contains(err.Error(), "request failed") {
			t.Fatalf("err = %v, want request failed", err)
		}
		assertNoText(t, err, presidioText)
	})
	t.Run("caller's context canceled", func(t *testing.T) {
		var sawCancel atomic.Bool
		f := startPresidio(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
			<-r.Context().Done()
			sawCancel.Store(true)
		})
		p, err := guard.NewPresidio(map[string]any{"endpoint": f.URL + "/analyze", "timeout": "10s"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err = p.Analyze(ctx, presidioText)
		if err == nil {
			t.Fatal("no error")
		}
		f.Close() // waits for the handler
		if !sawCancel.Load() {
			t.Error("the analyzer's request was not canceled")
		}
	})
	t.Run("empty text makes no call", func(t *testing.T) {
		f := startPresidio(t, presidioAnswer("[]"))
		p, _ := guard.NewPresidio(map[string]any{"endpoint": f.URL + "/analyze"})
		if spans, err := p.Analyze(t.Context(), ""); err != nil || spans != nil {
			t.Fatalf("Analyze(\"\") = %v, %v", spans, err)
		}
		if n := f.calls.Load(); n != 0 {
			t.Errorf("%d calls, want 0", n)
		}
	})
}

func TestPresidioOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		wantErr string // "" for none
	}{
		{name: "minimal", opts: map[string]any{"endpoint": "http://127.0.0.1:3000/analyze"}},
		{name: "all", opts: map[string]any{"endpoint": "https://presidio.tailnet.ts.net/analyze", "language": "en", "entities": []any{"PERSON"}, "score_threshold": int64(1), "timeout": "750ms"}},
		{name: "no endpoint", opts: map[string]any{}, wantErr: `presidio: option "endpoint": required`},
		{name: "not http", opts: map[string]any{"endpoint": "ftp://127.0.0.1/analyze"}, wantErr: `option "endpoint": want an http:// or https:// URL`},
		{name: "credentials in the URL", opts: map[string]any{"endpoint": "http://u:hunter22@127.0.0.1/analyze"}, wantErr: "must not carry credentials"},
		{name: "unknown key", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "langauge": "en"}, wantErr: `presidio: unknown option "langauge"`},
		{name: "duration as a number", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "timeout": int64(2)}, wantErr: `option "timeout": want a duration string such as "2s"`},
		{name: "bad duration", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "timeout": "2 seconds"}, wantErr: `option "timeout"`},
		{name: "zero timeout", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "timeout": "0s"}, wantErr: "must be positive"},
		{name: "threshold out of range", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "score_threshold": 2.0}, wantErr: "must be in [0, 1]"},
		{name: "entities not strings", opts: map[string]any{"endpoint": "http://127.0.0.1/analyze", "entities": []any{"PERSON", int64(3)}}, wantErr: "want a list of strings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := guard.NewPresidio(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			assertNoText(t, err, "hunter22")
		})
	}
}

// assertNoText fails if err's message holds any of texts.
func assertNoText(t *testing.T, err error, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds %q", err, s)
		}
	}
}
