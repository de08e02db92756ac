package tsrouter_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// audioToken is the router token of the audio tests: the gateway is only
// served to authenticated callers.
const audioToken = "router-token-for-audio-0123456789"

// audioFakes are the serves behind the audio routes: stt-main (default,
// with its own API key), stt-alt and tts-main. The chat tier points at
// stt-alt's fake.
type audioFakes struct {
	stt, alt, tts          *fakeserve.Server
	sttURL, altURL, ttsURL string
}

// audioSetup tunes the test config.
type audioSetup struct {
	routerExtra string // more [router] keys
	ttsTimeout  string // tts-main's timeout in seconds ("" = relay_timeout)
}

func startAudioFakes(t *testing.T) audioFakes {
	var f audioFakes
	f.stt, f.sttURL = startFake(t, fakeserve.Options{Model: "whisper-fake", APIKey: "stt-serve-key"})
	f.alt, f.altURL = startFake(t, fakeserve.Options{Model: "whisper-alt"})
	f.tts, f.ttsURL = startFake(t, fakeserve.Options{Model: "tts-fake"})
	return f
}

// audioTOML is a router with one chat tier, two STT routes and one TTS
// route, small audio caps (1 KiB input, 2 KiB output) and relay_timeout 2s.
func audioTOML(f audioFakes, s audioSetup) string {
	timeout := ""
	if s.ttsTimeout != "" {
		timeout = "timeout = " + s.ttsTimeout
	}
	return `
[router]
relay_timeout = 2.0
audio_max_input_bytes = 1024
audio_max_output_bytes = 2048
audio_max_text_chars = 1024
` + s.routerExtra + `

[[router.tiers]]
id = "local-a"
base_url = "` + f.altURL + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "SERVE_A_KEY"
model = "whisper-alt"

[router.model_routes]
chat = "local-a"

[[router.audio_routes]]
id = "stt-main"
purpose = "stt"
model = "whisper-fake"
base_url = "` + f.sttURL + `/v1"
auth_env = "STT_KEY"
default = true

[[router.audio_routes]]
id = "stt-alt"
purpose = "stt"
model = "whisper-alt"
base_url = "` + f.altURL + `/v1/"

[[router.audio_routes]]
id = "tts-main"
purpose = "tts"
model = "tts-fake"
base_url = "` + f.ttsURL + `/v1"
source_sample_rate = 24000
` + timeout + `
`
}

func audioRouterOpts() routerOpts {
	return routerOpts{token: audioToken, env: map[string]string{"STT_KEY": "stt-serve-key"}}
}

// audioPost sends body with the router token (hdr may override it) and
// returns status, headers and body.
func audioPost(t *testing.T, url, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	resp := post(t, t.Context(), url, body, append([]string{"Authorization", "Bearer " + audioToken}, hdr...)...)
	return resp.StatusCode, resp.Header, readAll(t, resp)
}

func audioJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testWAV is a minimal PCM WAV file: the input a caller would send.
func testWAV(pcm []byte, rate uint32) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+len(pcm)))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), rate, rate * 2, uint16(2), uint16(16)} {
		binary.Write(&b, le, v)
	}
	b.WriteString("data")
	binary.Write(&b, le, uint32(len(pcm)))
	b.Write(pcm)
	return b.Bytes()
}

func audioRamp(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i * 7)
	}
	return out
}

type sttReply struct {
	Text       string `json:"text"`
	IsFinal    *bool  `json:"is_final"`
	DurationMS *int64 `json:"duration_ms"`
	Model      string `json:"model"`
	RequestID  string `json:"request_id"`
	LatencyMS  *int64 `json:"latency_ms"`
}

// TestAudioTranscription covers POST /v1/audio/transcriptions: the three
// formats (pcm16 wrapped into a WAV the serve receives), the validation
// that refuses before any upstream call, route selection and the upstream
// failures — each case states how many uploads the serve must have seen.
func TestAudioTranscription(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{}), audioRouterOpts())
	url := base + "/v1/audio/transcriptions"

	wav := testWAV(audioRamp(800), 16000) // 400 samples at 16 kHz: 25 ms
	webm := append([]byte{0x1a, 0x45, 0xdf, 0xa3}, audioRamp(300)...)
	pcm := audioRamp(600) // 300 samples at 8 kHz: 37 ms
	b64 := base64.StdEncoding.EncodeToString
	stt := func(kv ...any) string {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return audioJSON(t, m)
	}
	wavBody := stt("audio_b64", b64(wav), "format", "wav", "is_final", true)

	tests := []struct {
		name     string
		body     string
		mode     fakeserve.Mode
		want     int
		wantType string
		main     int64 // uploads stt-main must see
		alt      int64 // uploads stt-alt must see
		check    func(t *testing.T, r sttReply, up fakeserve.AudioUpload)
	}{
		{name: "wav", body: wavBody, want: 200, main: 1, check: func(t *testing.T, r sttReply, up fakeserve.AudioUpload) {
			if r.Text != fakeserve.TranscriptFor(wav, "wav") || r.IsFinal == nil || !*r.IsFinal || r.Model != "whisper-fake" || r.LatencyMS == nil {
				t.Errorf("reply %+v", r)
			}
			if r.DurationMS == nil || *r.DurationMS != 25 {
				t.Errorf("duration_ms %v, want 25", r.DurationMS)
			}
			if up.FileName != "audio.wav" || up.ContentType != "audio/wav" || !bytes.Equal(up.File, wav) {
				t.Errorf("upload %s %s (%d bytes), want audio.wav audio/wav with the caller's file", up.FileName, up.ContentType, len(up.File))
			}
			if up.Model != "whisper-fake" || !slices.Equal(up.Fields, []string{"model", "file"}) {
				t.Errorf("fields %v model %q", up.Fields, up.Model)
			}
		}},
		{name: "is_final absent means final", body: stt("audio_b64", b64(wav), "format", "wav"), want: 200, main: 1},
		{name: "webm_opus", body: stt("audio_b64", b64(webm), "format", "webm_opus", "is_final", true), want: 200, main: 1, check: func(t *testing.T, r sttReply, up fakeserve.AudioUpload) {
			if r.Text != fakeserve.TranscriptFor(webm, "webm") || r.DurationMS != nil {
				t.Errorf("reply %+v (duration must be null for WebM)", r)
			}
			if up.FileName != "audio.webm" || up.ContentType != "audio/webm" || !bytes.Equal(up.File, webm) {
				t.Errorf("upload %s %s", up.FileName, up.ContentType)
			}
		}},
		{name: "pcm16 is wrapped into a mono 16-bit WAV", body: stt("audio_b64", b64(pcm), "format", "pcm16", "sample_rate", 8000, "is_final", true), want: 200, main: 1, check: func(t *testing.T, r sttReply, up fakeserve.AudioUpload) {
			f := up.File
			le := binary.LittleEndian
			if len(f) != 44+len(pcm) || string(f[0:4]) != "RIFF" || string(f[8:16]) != "WAVEfmt " || string(f[36:40]) != "data" {
				t.Fatalf("not a canonical WAV: % x", f[:min(len(f), 44)])
			}
			got := []uint32{le.Uint32(f[4:]), le.Uint32(f[16:]), uint32(le.Uint16(f[20:])), uint32(le.Uint16(f[22:])), le.Uint32(f[24:]), le.Uint32(f[28:]), uint32(le.Uint16(f[32:])), uint32(le.Uint16(f[34:])), le.Uint32(f[40:])}
			want := []uint32{uint32(36 + len(pcm)), 16, 1, 1, 8000, 16000, 2, 16, uint32(len(pcm))}
			if !slices.Equal(got, want) {
				t.Errorf("header riff,fmtlen,pcm,channels,rate,byterate,align,bits,datalen = %v, want %v", got, want)
			}
			if !bytes.Equal(f[44:], pcm) || up.FileName != "audio.wav" || up.ContentType != "audio/wav" {
				t.Error("samples or file name changed")
			}
			if r.Text != fakeserve.TranscriptFor(f, "wav") || r.DurationMS == nil || *r.DurationMS != 37 {
				t.Errorf("reply %+v", r)
			}
		}},
		{name: "named route", body: stt("route", "stt-alt", "audio_b64", b64(wav), "format", "wav"), want: 200, alt: 1, check: func(t *testing.T, r sttReply, up fakeserve.AudioUpload) {
			if r.Model != "whisper-alt" {
				t.Errorf("model %q, want whisper-alt", r.Model)
			}
		}},
		{name: "purpose stt uses the default route", body: stt("purpose", "stt", "audio_b64", b64(wav), "format", "wav"), want: 200, main: 1},
		{name: "route and matching purpose", body: stt("route", "stt-alt", "purpose", "stt", "audio_b64", b64(wav), "format", "wav"), want: 200, alt: 1},

		{name: "is_final false", body: stt("audio_b64", b64(wav), "format", "wav", "is_final", false), want: 422, wantType: "unsupported_audio_mode"},
		{name: "is_final not a boolean", body: stt("audio_b64", b64(wav), "format", "wav", "is_final", "true"), want: 400},
		{name: "unknown format", body: stt("audio_b64", b64(wav), "format", "mp3"), want: 400, wantType: "invalid_request_error"},
		{name: "pcm16 needs sample_rate", body: stt("audio_b64", b64(pcm), "format", "pcm16"), want: 400},
		{name: "sample_rate below 8000", body: stt("audio_b64", b64(pcm), "format", "pcm16", "sample_rate", 7999), want: 400},
		{name: "sample_rate above 192000", body: stt("audio_b64", b64(pcm), "format", "pcm16", "sample_rate", 192001), want: 400},
		{name: "sample_rate not an integer", body: stt("audio_b64", b64(pcm), "format", "pcm16", "sample_rate", 16000.5), want: 400},
		{name: "sample_rate forbidden for wav", body: stt("audio_b64", b64(wav), "format", "wav", "sample_rate", 16000), want: 400},
		{name: "pcm16 odd length", body: stt("audio_b64", b64(pcm[:599]), "format", "pcm16", "sample_rate", 8000), want: 400},
		{name: "not base64", body: stt("audio_b64", "not base64!", "format", "wav"), want: 400},
		{name: "base64 without padding", body: stt("audio_b64", strings.TrimRight(b64(wav[:10]), "="), "format", "wav"), want: 400},
		{name: "base64 with a line break", body: stt("audio_b64", b64(wav[:48])+"\n"+b64(wav[48:96]), "format", "wav"), want: 400},
		{name: "url-safe base64", body: stt("audio_b64", base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}), "format", "wav"), want: 400},
		{name: "empty audio", body: stt("audio_b64", "", "format", "wav"), want: 400},
		{name: "wav that is not a WAV", body: stt("audio_b64", b64(webm), "format", "wav"), want: 400},
		{name: "webm that is not a WebM", body: stt("audio_b64", b64(wav), "format", "webm_opus"), want: 400},
		{name: "decoded audio over the cap", body: stt("audio_b64", b64(testWAV(audioRamp(1025-44), 16000)), "format", "wav"), want: 413, wantType: "payload_too_large"},
		{name: "encoded audio over the cap", body: stt("audio_b64", b64(testWAV(audioRamp(2000), 16000)), "format", "wav"), want: 413, wantType: "payload_too_large"},
		{name: "not JSON", body: `{"audio_b64":`, want: 400},
		{name: "empty body", body: ``, want: 400},
		{name: "unknown route", body: stt("route", "nope", "audio_b64", b64(wav), "format", "wav"), want: 404, wantType: "route_not_found"},
		{name: "tts route on the stt endpoint", body: stt("route", "tts-main", "audio_b64", b64(wav), "format", "wav"), want: 404, wantType: "route_not_found"},
		{name: "route not a string", body: stt("route", 5, "audio_b64", b64(wav), "format", "wav"), want: 400},
		{name: "purpose mismatch", body: stt("purpose", "tts", "audio_b64", b64(wav), "format", "wav"), want: 400, wantType: "invalid_request_error"},
		{name: "route with a mismatched purpose", body: stt("route", "stt-alt", "purpose", "tts", "audio_b64", b64(wav), "format", "wav"), want: 400},

		{name: "upstream 500", body: wavBody, mode: fakeserve.ModeStatus500, want: 502, wantType: "upstream_error", main: 1},
		{name: "upstream 400 is still a bad gateway", body: wavBody, mode: fakeserve.ModeStatus400, want: 502, wantType: "upstream_error", main: 1},
		{name: "upstream reply not JSON", body: wavBody, mode: fakeserve.ModeAudioWrongType, want: 502, wantType: "upstream_error", main: 1},
		{name: "upstream reply without text", body: wavBody, mode: fakeserve.ModeAudioMalformed, want: 502, wantType: "upstream_error", main: 1},
		{name: "redirects are not followed", body: wavBody, mode: fakeserve.ModeAudioRedirect, want: 502, wantType: "upstream_error", main: 1},
		{name: "upstream connection dropped", body: wavBody, mode: fakeserve.ModeRefuse, want: 502, wantType: "upstream_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.stt.SetMode(tc.mode)
			defer f.stt.SetMode(fakeserve.ModeOK)
			main0, alt0 := f.stt.AudioStats().Transcriptions, f.alt.AudioStats().Transcriptions
			status, _, body := audioPost(t, url, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.want != 200 {
				e := decodeError(t, body)
				if tc.wantType != "" && e.Error.Type != tc.wantType {
					t.Errorf("type %q, want %q (%s)", e.Error.Type, tc.wantType, body)
				}
			}
			if got := f.stt.AudioStats().Transcriptions - main0; got != tc.main {
				t.Errorf("stt-main saw %d uploads, want %d", got, tc.main)
			}
			if got := f.alt.AudioStats().Transcriptions - alt0; got != tc.alt {
				t.Errorf("stt-alt saw %d uploads, want %d", got, tc.alt)
			}
			if tc.main > 0 && tc.mode != fakeserve.ModeRefuse {
				if got := f.stt.LastRequest().Header.Get("Authorization"); got != "Bearer stt-serve-key" {
					t.Errorf("upstream Authorization %q, want the route's auth_env bearer", got)
				}
			}
			if tc.check != nil {
				var r sttReply
				if err := json.Unmarshal([]byte(body), &r); err != nil {
					t.Fatal(err)
				}
				up := f.stt.LastAudioUpload()
				if tc.alt > 0 {
					up = f.alt.LastAudioUpload()
				}
				tc.check(t, r, up)
			}
		})
	}
	if s := f.tts.AudioStats(); s.Transcriptions+s.Speeches != 0 {
		t.Errorf("the TTS serve got STT traffic: %+v", s)
	}
}

type ttsReply struct {
	AudioB64   string `json:"audio_b64"`
	Format     string `json:"format"`
	SampleRate int    `json:"sample_rate"`
	Model      string `json:"model"`
	RequestID  string `json:"request_id"`
	LatencyMS  *int64 `json:"latency_ms"`
}

// TestAudioSpeech covers POST /v1/audio/speech: PCM relayed as base64 with
// the route's source sample rate, only pcm16 requested, and the reply
// checks (type, whole samples, output cap) and upstream failures.
func TestAudioSpeech(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{ttsTimeout: "1.0"}), audioRouterOpts())
	url := base + "/v1/audio/speech"
	tts := func(kv ...any) string {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return audioJSON(t, m)
	}
	// 15 characters: 1500 PCM bytes, under the 2 KiB output cap; 25 are
	// 2500 bytes, over it.
	short, long := "Hi <b>&</b> ünï", strings.Repeat("ä", 25)
	ok := tts("input", short, "response_format", "pcm16")

	tests := []struct {
		name     string
		body     string
		mode     fakeserve.Mode
		want     int
		wantType string
		calls    int64
		maxTime  time.Duration // 0: no bound checked
	}{
		{name: "pcm16", body: ok, want: 200, calls: 1},
		{name: "response_format absent means pcm16", body: tts("input", short), want: 200, calls: 1},
		{name: "purpose tts", body: tts("input", short, "purpose", "tts"), want: 200, calls: 1},
		{name: "named route", body: tts("input", short, "route", "tts-main"), want: 200, calls: 1},
		{name: "mp3 is refused before any upstream call", body: tts("input", short, "response_format", "mp3"), want: 400, wantType: "invalid_request_error"},
		{name: "response_format pcm (the upstream name) is refused", body: tts("input", short, "response_format", "pcm"), want: 400},
		{name: "empty input", body: tts("input", "  "), want: 400},
		{name: "input not a string", body: tts("input", []string{"a"}), want: 400},
		{name: "input over audio_max_text_chars", body: tts("input", strings.Repeat("ü", 1025)), want: 413, wantType: "payload_too_large"},
		{name: "stt route on the tts endpoint", body: tts("input", short, "route", "stt-main"), want: 404, wantType: "route_not_found"},
		{name: "purpose mismatch", body: tts("input", short, "purpose", "stt"), want: 400},
		{name: "output over audio_max_output_bytes", body: tts("input", long), want: 413, wantType: "payload_too_large", calls: 1},
		{name: "odd number of PCM bytes", body: ok, mode: fakeserve.ModeAudioMalformed, want: 502, wantType: "upstream_error", calls: 1},
		{name: "wrong content type", body: ok, mode: fakeserve.ModeAudioWrongType, want: 502, wantType: "upstream_error", calls: 1},
		{name: "upstream 500", body: ok, mode: fakeserve.ModeStatus500, want: 502, wantType: "upstream_error", calls: 1},
		{name: "upstream 503", body: ok, mode: fakeserve.ModeStatus503, want: 502, wantType: "upstream_error", calls: 1},
		{name: "redirects are not followed", body: ok, mode: fakeserve.ModeAudioRedirect, want: 502, wantType: "upstream_error", calls: 1},
		{name: "hung upstream times out", body: ok, mode: fakeserve.ModeHang, want: 504, wantType: "upstream_timeout", calls: 1, maxTime: 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.tts.SetMode(tc.mode)
			defer f.tts.SetMode(fakeserve.ModeOK)
			calls0 := f.tts.AudioStats().Speeches
			start := time.Now()
			status, _, body := audioPost(t, url, tc.body)
			took := time.Since(start)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if got := f.tts.AudioStats().Speeches - calls0; got != tc.calls {
				t.Errorf("the serve saw %d requests, want %d", got, tc.calls)
			}
			if tc.maxTime > 0 {
				// tts-main's timeout is 1 s: not much sooner, not hung.
				if took < 900*time.Millisecond {
					t.Errorf("timed out after %v, before the route's 1s deadline", took)
				}
				within(t, "504 for a hung serve", took, tc.maxTime)
			}
			if tc.want != 200 {
				if e := decodeError(t, body); tc.wantType != "" && e.Error.Type != tc.wantType {
					t.Errorf("type %q, want %q", e.Error.Type, tc.wantType)
				}
				return
			}
			var r ttsReply
			if err := json.Unmarshal([]byte(body), &r); err != nil {
				t.Fatal(err)
			}
			audio, err := base64.StdEncoding.DecodeString(r.AudioB64)
			if err != nil || !bytes.Equal(audio, fakeserve.SpeechPCM(short)) {
				t.Errorf("audio_b64 does not decode to the serve's PCM (%d bytes, %v)", len(audio), err)
			}
			if r.Format != "pcm16" || r.SampleRate != 24000 || r.Model != "tts-fake" || r.RequestID == "" || r.LatencyMS == nil {
				t.Errorf("reply fields %+v", r)
			}
			last := f.tts.LastRequest()
			var up map[string]any
			if err := json.Unmarshal(last.Body, &up); err != nil {
				t.Fatal(err)
			}
			if want := map[string]any{"model": "tts-fake", "input": short, "response_format": "pcm"}; !sameJSON(up, want) {
				t.Errorf("upstream body %v, want %v", up, want)
			}
			if last.Header.Get("Accept") != "audio/pcm" || last.Header.Get("Authorization") != "" {
				t.Errorf("upstream headers %v", last.Header)
			}
		})
	}
	// The deadline cancels the upstream request; the serve notices soon after.
	deadline := time.Now().Add(5 * time.Second)
	for f.tts.AudioStats().Cancelled < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := f.tts.AudioStats().Cancelled; n != 1 {
		t.Errorf("the hung request was cancelled upstream %d times, want 1", n)
	}
}

func sameJSON(a, b map[string]any) bool {
	return jsonText(a) == jsonText(b)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
