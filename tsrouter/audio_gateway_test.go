package tsrouter_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestAudioFrontDoor: the gateway's own framing and front-door rules —
// the token always (audio is never served unauthenticated), POST only, a
// Content-Length (no chunked bodies), the encoded body cap.
func TestAudioFrontDoor(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{}), audioRouterOpts())
	good := `{"input":"hello","response_format":"pcm16"}`
	// The cap is min(32 MiB, max(ceil(1024/3)*4, 1024*12) + 4096) = 16384.
	const bodyCap = 16384
	atCap := `{"input":"hi","pad":"` + strings.Repeat("x", bodyCap-len(`{"input":"hi","pad":""}`)) + `"}`
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		hdr       []string
		chunked   bool
		want      int
		wantType  string
		wantClose bool
	}{
		{name: "token as bearer", path: "/v1/audio/speech", body: good, want: 200},
		{name: "token as x-api-key", path: "/v1/audio/speech", body: good, hdr: []string{"Authorization", "", "X-Api-Key", audioToken}, want: 200},
		{name: "no token", path: "/v1/audio/speech", body: good, hdr: []string{"Authorization", ""}, want: 401, wantType: "authentication_error"},
		{name: "wrong token", path: "/v1/audio/transcriptions", body: good, hdr: []string{"Authorization", "Bearer nope"}, want: 401, wantType: "authentication_error"},
		{name: "GET speech", method: http.MethodGet, path: "/v1/audio/speech", want: 405, wantType: "method_not_allowed"},
		{name: "GET transcriptions", method: http.MethodGet, path: "/v1/audio/transcriptions", want: 405, wantType: "method_not_allowed"},
		{name: "chunked body", path: "/v1/audio/speech", body: good, chunked: true, want: 411, wantType: "invalid_request", wantClose: true},
		{name: "body at the cap", path: "/v1/audio/speech", body: atCap, want: 200},
		{name: "body over the cap", path: "/v1/audio/speech", body: atCap + " ", want: 413, wantType: "payload_too_large", wantClose: true},
		{name: "empty body", path: "/v1/audio/speech", body: "", want: 400},
		{name: "body not an object", path: "/v1/audio/transcriptions", body: `[1]`, want: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
			req, err := http.NewRequestWithContext(t.Context(), method, base+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+audioToken)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				if tc.hdr[i+1] == "" {
					req.Header.Del(tc.hdr[i])
				} else {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
			if tc.wantType != "" && decodeError(t, got).Error.Type != tc.wantType {
				t.Errorf("type %q, want %q", decodeError(t, got).Error.Type, tc.wantType)
			}
			if tc.want == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
			}
			if resp.Close != tc.wantClose {
				t.Errorf("connection close %v, want %v", resp.Close, tc.wantClose)
			}
		})
	}
}

// TestAudioRequestIDs: request_id is the caller's sanitized X-Request-Id
// (or Request-Id), else aud_<32 hex>; the header says the same, and the
// decision record is found under it — without any audio or text.
func TestAudioRequestIDs(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{}), audioRouterOpts())
	aud := regexp.MustCompile(`^aud_[0-9a-f]{32}$`)
	const text = "keep me out"
	body := `{"input":"` + text + `"}`
	tests := []struct {
		name string
		hdr  []string
		want string // "" = a generated aud_ id
	}{
		{name: "X-Request-Id", hdr: []string{"X-Request-Id", "voice-turn-42"}, want: "voice-turn-42"},
		{name: "legacy Request-Id", hdr: []string{"Request-Id", "legacy.7"}, want: "legacy.7"},
		{name: "none", want: ""},
		{name: "invalid id is replaced", hdr: []string{"X-Request-Id", "has space"}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, got := audioPost(t, base+"/v1/audio/speech", body, tc.hdr...)
			if status != 200 {
				t.Fatalf("status %d: %s", status, got)
			}
			var r ttsReply
			json.Unmarshal([]byte(got), &r)
			if tc.want != "" && r.RequestID != tc.want || tc.want == "" && !aud.MatchString(r.RequestID) {
				t.Errorf("request_id %q, want %q", r.RequestID, tc.want)
			}
			if hdr.Get("X-Request-Id") != r.RequestID {
				t.Errorf("X-Request-Id header %q, body %q", hdr.Get("X-Request-Id"), r.RequestID)
			}
			resp := audioGet(t, base+"/v1/requests/"+r.RequestID)
			rec := readAll(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(rec, `"kind":"audio-tts"`) || !strings.Contains(rec, `"route":"tts"`) || !strings.Contains(rec, `"served_tier":"tts-main"`) {
				t.Errorf("decision record %d %s", resp.StatusCode, rec)
			}
			if strings.Contains(rec, text) || strings.Contains(rec, r.AudioB64[:16]) {
				t.Errorf("decision record holds content: %s", rec)
			}
		})
	}
	// Errors carry a generated id too.
	status, hdr, _ := audioPost(t, base+"/v1/audio/speech", `{"input":"x","response_format":"mp3"}`)
	if status != 400 || !aud.MatchString(hdr.Get("X-Request-Id")) {
		t.Errorf("400 with X-Request-Id %q", hdr.Get("X-Request-Id"))
	}
}

// audioGet sends an authenticated GET.
func audioGet(t *testing.T, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+audioToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestAudioBusy: audio_max_concurrency slots are audio's own — when they
// are taken the next audio request gets 503 server_busy at once, chat
// still serves, and a freed slot serves again.
func TestAudioBusy(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{routerExtra: "audio_max_concurrency = 1", ttsTimeout: "10"}), audioRouterOpts())
	f.tts.SetMode(fakeserve.ModeHang)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/audio/speech", strings.NewReader(`{"input":"hold the slot"}`))
		req.Header.Set("Authorization", "Bearer "+audioToken)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	audioWaitFor(t, "the first request to reach the serve", func() bool { return f.tts.AudioStats().InFlight == 1 })

	wav := base64.StdEncoding.EncodeToString(testWAV(audioRamp(100), 16000))
	for _, c := range []struct{ path, body string }{
		{"/v1/audio/speech", `{"input":"second"}`},
		{"/v1/audio/transcriptions", `{"audio_b64":"` + wav + `","format":"wav"}`},
	} {
		start := time.Now()
		status, _, body := audioPost(t, base+c.path, c.body)
		if status != 503 || decodeError(t, body).Error.Type != "server_busy" || decodeError(t, body).Error.Message != "audio gateway busy; try again later" {
			t.Errorf("%s while busy: %d %s", c.path, status, body)
		}
		within(t, "busy refusal", time.Since(start), 2*time.Second)
	}
	status, _, body := audioPost(t, base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 {
		t.Errorf("chat while audio is busy: %d %s", status, body)
	}

	cancel()
	if err := <-done; err == nil {
		t.Error("the held request finished; want it cancelled by the client")
	}
	audioWaitFor(t, "the serve to see the cancellation", func() bool { return f.tts.AudioStats().InFlight == 0 })
	f.tts.SetMode(fakeserve.ModeOK)
	// The slot is released when the handler returns, just after the
	// upstream request is cancelled.
	audioWaitFor(t, "a free audio slot", func() bool {
		status, _, _ := audioPost(t, base+"/v1/audio/speech", `{"input":"again"}`)
		return status == 200
	})
	if f.stt.AudioStats().Transcriptions != 0 {
		t.Error("a refused transcription reached the serve")
	}
}

func audioWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAudioNotServed: an audio endpoint exists only while a route of its
// purpose is bound and the router token is on; a default route whose
// auth_env did not resolve is not replaced by another route.
func TestAudioNotServed(t *testing.T) {
	f := startAudioFakes(t)
	full := audioTOML(f, audioSetup{})
	ttsOnly := full[:strings.Index(full, "[[router.audio_routes]]")] + full[strings.LastIndex(full, "[[router.audio_routes]]"):]
	wav := base64.StdEncoding.EncodeToString(testWAV(audioRamp(100), 16000))
	stt := `{"audio_b64":"` + wav + `","format":"wav"}`
	tests := []struct {
		name    string
		toml    string
		opts    routerOpts
		path    string
		body    string
		want    int
		advert  []string // audio paths /healthz lists
		wantTyp string
	}{
		{name: "no audio routes", toml: oneTier(f.altURL, ""), opts: audioRouterOpts(), path: "/v1/audio/speech", body: `{"input":"x"}`, want: 404, wantTyp: "not_found"},
		{name: "tts only: no transcriptions", toml: ttsOnly, opts: audioRouterOpts(), path: "/v1/audio/transcriptions", body: stt, want: 404, advert: []string{"/v1/audio/speech"}},
		{name: "tts only: speech served", toml: ttsOnly, opts: audioRouterOpts(), path: "/v1/audio/speech", body: `{"input":"x"}`, want: 200, advert: []string{"/v1/audio/speech"}},
		{name: "no router token: gateway off", toml: full, opts: routerOpts{env: map[string]string{"STT_KEY": "stt-serve-key"}}, path: "/v1/audio/speech", body: `{"input":"x"}`, want: 404},
		{name: "default route unbound: no fallback", toml: full, opts: routerOpts{token: audioToken}, path: "/v1/audio/transcriptions", body: stt, want: 404, wantTyp: "route_not_found", advert: []string{"/v1/audio/speech", "/v1/audio/transcriptions"}},
		{name: "default route unbound: named route serves", toml: full, opts: routerOpts{token: audioToken}, path: "/v1/audio/transcriptions", body: `{"route":"stt-alt",` + stt[1:], want: 200, advert: []string{"/v1/audio/speech", "/v1/audio/transcriptions"}},
		{name: "all bound", toml: full, opts: audioRouterOpts(), path: "/v1/audio/transcriptions", body: stt, want: 200, advert: []string{"/v1/audio/speech", "/v1/audio/transcriptions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := startRouter(t, tc.toml, tc.opts)
			status, _, body := audioPost(t, base+tc.path, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.wantTyp != "" && decodeError(t, body).Error.Type != tc.wantTyp {
				t.Errorf("type %q, want %q", decodeError(t, body).Error.Type, tc.wantTyp)
			}
			var health struct {
				Routes []string `json:"routes"`
			}
			json.Unmarshal([]byte(readAll(t, audioGet(t, base+"/healthz"))), &health)
			var advert []string
			for _, r := range health.Routes {
				if strings.HasPrefix(r, "/v1/audio/") {
					advert = append(advert, r)
				}
			}
			if !slices.Equal(advert, tc.advert) {
				t.Errorf("/healthz lists %v, want %v", advert, tc.advert)
			}
		})
	}
}

// TestHealthTiersListsEveryServe: /v1/health/tiers has a row per chat
// tier, purpose model and audio route, in that order, and the purpose and
// audio probes are unauthenticated (stt-main's serve demands a key).
func TestHealthTiersListsEveryServe(t *testing.T) {
	f := startAudioFakes(t)
	toml := audioTOML(f, audioSetup{}) + `
[[router.purpose_models]]
id = "embed"
kind = "embedding"
model = "emb"
base_url = "` + f.altURL + `/v1"
`
	base := startRouter(t, toml, audioRouterOpts())
	var got struct {
		Tiers []struct {
			ID, Role, Status, Reason string
			LastCheck                *string `json:"last_check"`
		} `json:"tiers"`
	}
	resp := audioGet(t, base+"/v1/health/tiers")
	if err := json.Unmarshal([]byte(readAll(t, resp)), &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	want := []string{
		"local-a llm up availability_not_configured",
		"embed embeddings up health_passed",
		"stt-main stt down health_http_401",
		"stt-alt stt up health_passed",
		"tts-main tts up health_passed",
	}
	var rows []string
	for _, r := range got.Tiers {
		rows = append(rows, r.ID+" "+r.Role+" "+r.Status+" "+r.Reason)
		if r.Role != "llm" && r.LastCheck == nil {
			t.Errorf("%s: no last_check", r.ID)
		}
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows\n got %q\nwant %q", rows, want)
	}
	if f.stt.LastRequest().Header.Get("Authorization") != "" {
		t.Error("the readiness probe sent a key")
	}
}

// TestAudioNeverLogged runs successful and failing audio requests with a
// logger capturing everything at debug level: neither the audio, nor the
// text, nor the transcript, nor a token appears in the logs or the
// decision log.
func TestAudioNeverLogged(t *testing.T) {
	f := startAudioFakes(t)
	logs := &syncBuffer{}
	h := newHandler(t, audioTOML(f, audioSetup{ttsTimeout: "0.3"}), audioRouterOpts(), slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv := httptest.NewServer(h)
	defer srv.Close()

	audio := testWAV([]byte(strings.Repeat("secret-audio-samples-", 20)), 16000)
	b64 := base64.StdEncoding.EncodeToString(audio)
	const text = "pw is swordfish-42"
	transcript := fakeserve.TranscriptFor(audio, "wav")
	requests := []struct {
		path, body string
		mode       fakeserve.Mode
	}{
		{"/v1/audio/transcriptions", `{"audio_b64":"` + b64 + `","format":"wav"}`, fakeserve.ModeOK},
		{"/v1/audio/transcriptions", `{"audio_b64":"` + b64 + `","format":"wav"}`, fakeserve.ModeStatus500},
		{"/v1/audio/transcriptions", `{"audio_b64":"` + b64 + `","format":"wav"}`, fakeserve.ModeAudioWrongType},
		{"/v1/audio/transcriptions", `{"audio_b64":"` + b64 + `","format":"webm_opus"}`, fakeserve.ModeOK},
		{"/v1/audio/transcriptions", `{"audio_b64":"` + b64 + `x","format":"wav"}`, fakeserve.ModeOK},
		{"/v1/audio/speech", `{"input":"` + text + `"}`, fakeserve.ModeOK},
		{"/v1/audio/speech", `{"input":"` + text + `"}`, fakeserve.ModeAudioMalformed},
		{"/v1/audio/speech", `{"input":"` + text + `"}`, fakeserve.ModeHang},
		{"/v1/audio/speech", `{"input":"` + text + `","response_format":"mp3"}`, fakeserve.ModeOK},
	}
	var seen []int
	for _, r := range requests {
		f.stt.SetMode(r.mode)
		f.tts.SetMode(r.mode)
		status, _, _ := audioPost(t, srv.URL+r.path, r.body)
		seen = append(seen, status)
	}
	f.stt.SetMode(fakeserve.ModeOK)
	f.tts.SetMode(fakeserve.ModeOK)
	if want := []int{200, 502, 502, 400, 400, 200, 502, 504, 400}; !slices.Equal(seen, want) {
		t.Fatalf("statuses %v, want %v", seen, want)
	}
	decisions := readAll(t, audioGet(t, srv.URL+"/v1/decisions?limit=50"))
	if !strings.Contains(decisions, "audio-stt") || !strings.Contains(logs.String(), "/v1/audio/speech") {
		t.Fatalf("expected audio decisions and request logs")
	}
	for _, secret := range []string{b64, b64[len(b64)/2 : len(b64)/2+24], text, "swordfish", transcript, audioToken, "stt-serve-key"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs.String())
		}
		if strings.Contains(decisions, secret) {
			t.Errorf("decision log contains %q", secret)
		}
	}
}
