package tsrouter

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// The audio gateway: POST /v1/audio/transcriptions (STT)
// and POST /v1/audio/speech (TTS) relay base64 audio and text in JSON to
// the [[router.audio_routes]] serves. Audio, transcripts and text are
// caller content: they never reach a log line, an error message or a
// decision record.

// audioGateway is the audio surface: the routes it may use, the caps and
// the audio-only slot pool (separate from chat admission, so a burst of
// long transcriptions cannot starve chat, nor chat the audio).
type audioGateway struct {
	routes []*backends.AudioRoute
	limits backends.AudioLimits
	slots  chan struct{}
	// bodyCap is the encoded request cap: min(max body, max(base64 size
	// of the input cap, 12 bytes per text character — a \uXXXX\uXXXX
	// surrogate pair) + 4 KiB of JSON around it).
	bodyCap int64
}

// newAudioGateway sets the gateway up. Audio routes are served to
// authenticated callers only: without a router token (which the CLI
// already refuses at start-up) the gateway stays off rather than open.
func newAudioGateway(set *backends.Set, maxBody int64, tokenOn bool, log *slog.Logger) *audioGateway {
	g := &audioGateway{routes: set.AudioRoutes(), limits: set.AudioLimits()}
	if len(g.routes) > 0 && !tokenOn {
		log.Warn("audio routes are not served: the audio gateway requires the router token ([server].auth_env)")
		g.routes = nil
	}
	l := &g.limits
	l.MaxInputBytes = cmp0(l.MaxInputBytes, backends.DefaultAudioMaxInputBytes)
	l.MaxOutputBytes = cmp0(l.MaxOutputBytes, backends.DefaultAudioMaxOutputBytes)
	l.MaxTextChars = cmp0(l.MaxTextChars, backends.DefaultAudioMaxTextChars)
	l.MaxConcurrency = cmp0(l.MaxConcurrency, backends.DefaultAudioMaxConcurrency)
	g.slots = make(chan struct{}, l.MaxConcurrency)
	encoded := int64(l.MaxInputBytes+2) / 3 * 4
	g.bodyCap = min(maxBody, max(encoded, int64(l.MaxTextChars)*12)+4096)
	return g
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// bound reports whether a route of purpose can be used.
func (g *audioGateway) bound(purpose string) bool {
	for _, r := range g.routes {
		if r.Purpose == purpose {
			return true
		}
	}
	return false
}

// serveAudio serves both audio endpoints; purpose is the endpoint's
// ("stt" or "tts"). The routes exist only when the purpose is bound.
func (h *Handler) serveAudio(w *recorder, r *http.Request, rec *record, purpose string) error {
	g := h.audioGW
	// Audio answers always carry a request id in the body; without a
	// usable caller id it is an aud_ one, in the header too.
	if !telemetry.ValidID(r.Header.Get(telemetry.HeaderRequestID)) && !telemetry.ValidID(r.Header.Get(telemetry.HeaderRequestIDLegacy)) {
		rec.requestID = newAudioRequestID()
		w.Header()[telemetry.HeaderRequestID] = []string{rec.requestID}
	}
	body := w.body
	req, err := parseObject(body)
	if err != nil {
		return err
	}
	route, err := g.selectRoute(req, purpose)
	if err != nil {
		return err
	}
	// Grants and key restrictions name audio routes by id.
	if !rec.principal.MayUseBackend(route.ID, route.ID) {
		return errAudioRouteForbidden
	}
	rec.alias, rec.tier, rec.requestBytes = purpose, route.ID, len(body)
	var reason, outcome string
	defer func() {
		if reason != "" {
			h.recordAudio(w, rec, purpose, route, reason, outcome)
		}
	}()
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		reason, outcome = "audio_busy", "skipped"
		return errAudioBusy
	}
	var call *audioCall
	var aerr *apiError
	if purpose == "stt" {
		call, aerr = g.transcription(req, route)
	} else {
		call, aerr = g.speech(req, route)
	}
	if aerr != nil {
		return aerr
	}
	if purpose == "tts" {
		// Input stage: the text to speak.
		if call.body, err = h.audioText(r.Context(), rec, call.body, "input"); err != nil {
			reason, outcome = guardFailure(err)
			return err
		}
	}
	reply, err := route.Post(r.Context(), call.path, call.contentType, call.accept, call.body, int64(g.limits.MaxOutputBytes))
	if err != nil {
		reason, outcome, aerr = audioFailure(err, purpose)
		if aerr == nil { // the caller is gone; nobody to answer
			rec.detail = "client disconnected; audio upstream cancelled"
			return nil
		}
		return aerr.withDetail("audio upstream: " + err.Error())
	}
	var out []byte
	if purpose == "stt" {
		out, reason = transcriptionReply(reply, call, route, rec)
	} else {
		out, reason = speechReply(reply, route, rec)
	}
	if out == nil {
		outcome = "error"
		return errAudioUpstream.withDetail("audio upstream: unusable reply (" + reason + ")")
	}
	if purpose == "stt" {
		// Input stage: the transcript is the caller's words, as text.
		if out, err = h.audioText(r.Context(), rec, out, "text"); err != nil {
			reason, outcome = guardFailure(err)
			return err
		}
	}
	outcome = "served"
	h.writeReply(w, out)
	return nil
}

// audioFailure maps a failed upstream exchange to the decision reason and
// the caller's error (nil when the caller went away).
func audioFailure(err error, purpose string) (reason, outcome string, _ *apiError) {
	if errors.Is(err, backends.ErrClientGone) {
		return "client_disconnected", "error", nil
	}
	var ae *backends.AudioError
	if !errors.As(err, &ae) {
		return "backend_error_internal", "error", errAudioInternal
	}
	switch ae.Failure {
	case backends.AudioTimedOut:
		return "backend_error_timeout", "error", errAudioTimeout
	case backends.AudioOversized:
		// Too much synthesized audio is the caller's request being too
		// big for the cap; an oversized transcript is the serve's fault.
		if purpose == "tts" {
			return "backend_error_oversized", "error", errAudioOutputTooLarge
		}
		return "backend_error_oversized", "error", errAudioUpstream
	case backends.AudioStatus:
		return "backend_error_status", "error", errAudioUpstream
	default:
		return "backend_error_transport", "error", errAudioUpstream
	}
}

// recordAudio writes the decision record: metadata only.
func (h *Handler) recordAudio(w *recorder, rec *record, purpose string, route *backends.AudioRoute, reason, outcome string) {
	served := ""
	if outcome == "served" {
		served = route.ID
	}
	h.decisions.Record(telemetry.Decision{
		Kind: "audio-" + purpose, Route: purpose, RequestedTier: route.ID, ServedTier: served,
		Attempts:     []telemetry.Attempt{{TierID: route.ID, Succeeded: outcome == "served", Reason: reason, Outcome: outcome}},
		RequestBytes: int64(rec.requestBytes), ResponseBytes: w.bytes, LatencyMS: float64(time.Since(rec.start).Microseconds()) / 1000,
		RequestID: rec.requestID, WorkbenchRunID: rec.workbenchRunID, TaskID: rec.taskID, UnixTS: float64(rec.start.UnixMicro()) / 1e6,
		Guardrails: rec.guard.verdictList(), GuardrailEntities: rec.guard.entityCounts(),
	})
}

// readAudioBody applies the audio framing rules: a Content-Length is
// required (no chunked bodies) and the encoded cap is checked before
// reading.
func (h *Handler) readAudioBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if len(r.TransferEncoding) > 0 || r.ContentLength < 0 {
		return nil, errAudioLength
	}
	if r.ContentLength > h.audioGW.bodyCap {
		return nil, errAudioBodyTooLarge
	}
	return h.readBody(w, r, h.audioGW.bodyCap)
}

// selectRoute picks the route: the one named by "route" (which must serve
// this endpoint's purpose), else the purpose's default. "purpose", when
// given, must be this endpoint's. There is no fallback between routes.
func (g *audioGateway) selectRoute(req *jsonobj.Object, purpose string) (*backends.AudioRoute, error) {
	id, hasID, aerr := optString(req, "route")
	if aerr != nil {
		return nil, aerr
	}
	want, hasPurpose, aerr := optString(req, "purpose")
	if aerr != nil {
		return nil, aerr
	}
	var found *backends.AudioRoute
	for _, r := range g.routes {
		if r.Purpose == purpose && (hasID && r.ID == id || !hasID && r.Default) {
			found = r
			break
		}
	}
	if hasID && found == nil {
		return nil, errAudioRouteNotFound
	}
	if hasPurpose && want != purpose {
		return nil, errBadRequest(`purpose must be "` + purpose + `" on this endpoint`)
	}
	if found == nil {
		// The default route's auth_env did not resolve: it is not bound,
		// and another route is not silently used instead.
		return nil, errAudioRouteNotFound
	}
	return found, nil
}

// audioCall is one prepared upstream request.
type audioCall struct {
	path, contentType, accept string
	body                      []byte
	// durationMS is the audio's length when the router can tell (WAV,
	// PCM), else -1.
	durationMS int64
}

// sttFormats maps the accepted STT formats to the uploaded file.
var sttFormats = map[string]struct{ name, contentType string }{
	"wav":       {"audio.wav", "audio/wav"},
	"pcm16":     {"audio.wav", "audio/wav"}, // wrapped into a WAV first
	"webm_opus": {"audio.webm", "audio/webm"},
}

// transcription validates an STT request and builds the multipart upload.
func (g *audioGateway) transcription(req *jsonobj.Object, route *backends.AudioRoute) (*audioCall, *apiError) {
	format, _, aerr := optString(req, "format")
	if aerr != nil {
		return nil, aerr
	}
	file, ok := sttFormats[format]
	if !ok {
		return nil, errBadRequest("format must be one of wav, pcm16, webm_opus")
	}
	// Only whole utterances are transcribed. An absent is_final means a
	// whole one, as a client unaware of partial results would intend.
	switch v := string(req.Get("is_final")); v {
	case "", "true":
	case "false":
		return nil, errAudioNotFinal
	default:
		return nil, errBadRequest("is_final must be a boolean")
	}
	rate, hasRate, aerr := optInt(req, "sample_rate")
	switch {
	case aerr != nil:
		return nil, aerr
	case format == "pcm16" && (!hasRate || rate < 8000 || rate > 192000):
		return nil, errBadRequest("sample_rate must be an integer between 8000 and 192000 for pcm16")
	case format != "pcm16" && hasRate:
		return nil, errBadRequest("sample_rate is only allowed with format pcm16 (WAV and WebM carry their own)")
	}
	b64, _, aerr := optString(req, "audio_b64")
	switch {
	case aerr != nil:
		return nil, aerr
	case b64 == "":
		return nil, errBadRequest("audio_b64 must be a non-empty base64 string")
	case int64(len(b64)) > int64(g.limits.MaxInputBytes+2)/3*4:
		return nil, errAudioInputTooLarge
	}
	audio, ok := decodeStrictBase64(b64)
	switch {
	case !ok:
		return nil, errBadRequest("audio_b64 must be standard padded base64")
	case len(audio) > g.limits.MaxInputBytes:
		return nil, errAudioInputTooLarge
	case len(audio) == 0:
		return nil, errBadRequest("audio_b64 must not be empty")
	}
	call := &audioCall{path: "/audio/transcriptions", accept: "application/json", durationMS: -1}
	switch format {
	case "pcm16":
		if len(audio)%2 != 0 {
			return nil, errBadRequest("pcm16 audio must be whole 16-bit samples (an even number of bytes)")
		}
		call.durationMS = int64(len(audio)/2) * 1000 / rate
		audio = wrapPCM16(audio, int(rate))
	case "wav":
		if !looksLikeWAV(audio) {
			return nil, errBadRequest("audio_b64 is not a WAV file")
		}
		if ms, ok := wavDurationMS(audio); ok {
			call.durationMS = ms
		}
	case "webm_opus":
		if !looksLikeWebM(audio) {
			return nil, errBadRequest("audio_b64 is not a WebM file")
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(audio) + 512)
	mw := multipart.NewWriter(&buf)
	mw.WriteField("model", route.Model)
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", `form-data; name="file"; filename="`+file.name+`"`)
	hdr.Set("Content-Type", file.contentType)
	part, err := mw.CreatePart(hdr)
	if err != nil {
		return nil, errAudioInternal
	}
	part.Write(audio)
	if mw.Close() != nil {
		return nil, errAudioInternal
	}
	call.contentType = mw.FormDataContentType()
	call.body = buf.Bytes()
	return call, nil
}

// speech validates a TTS request and builds the upstream JSON.
func (g *audioGateway) speech(req *jsonobj.Object, route *backends.AudioRoute) (*audioCall, *apiError) {
	// Only raw PCM is relayed: the router reports its sample rate and
	// does not transcode. Absent means pcm16, the only format there is.
	format, hasFormat, aerr := optString(req, "response_format")
	if aerr != nil || hasFormat && format != "pcm16" {
		return nil, errBadRequest("response_format must be pcm16")
	}
	input, _, aerr := optString(req, "input")
	switch {
	case aerr != nil:
		return nil, aerr
	case strings.TrimSpace(input) == "":
		return nil, errBadRequest("input must be a non-empty string")
	case utf8.RuneCountInString(input) > g.limits.MaxTextChars:
		return nil, errAudioTextTooLong
	}
	body, err := json.Marshal(struct {
		Model          string `json:"model"`
		Input          string `json:"input"`
		ResponseFormat string `json:"response_format"`
	}{route.Model, input, "pcm"})
	if err != nil {
		return nil, errAudioInternal
	}
	return &audioCall{path: "/audio/speech", contentType: "application/json", accept: "audio/pcm", body: body, durationMS: -1}, nil
}

// transcriptionReply checks the serve's answer (2xx JSON object with a
// string "text") and renders the caller's; nil and a reason when unusable.
func transcriptionReply(reply *backends.AudioReply, call *audioCall, route *backends.AudioRoute, rec *record) ([]byte, string) {
	if mt, _, err := mime.ParseMediaType(reply.ContentType); err != nil || mt != "application/json" {
		return nil, "backend_error_content_type"
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(reply.Body, &obj) != nil {
		return nil, "backend_error_malformed"
	}
	var text string
	if t := obj["text"]; len(t) == 0 || t[0] != '"' || json.Unmarshal(t, &text) != nil {
		return nil, "backend_error_malformed"
	}
	var duration *int64
	if call.durationMS >= 0 {
		duration = &call.durationMS
	} else if d, ok := upstreamDurationMS(obj["duration"]); ok {
		duration = &d
	}
	return mustJSON(struct {
		Text       string `json:"text"`
		IsFinal    bool   `json:"is_final"`
		DurationMS *int64 `json:"duration_ms"`
		Model      string `json:"model"`
		RequestID  string `json:"request_id"`
		LatencyMS  int64  `json:"latency_ms"`
	}{text, true, duration, route.Model, rec.requestID, time.Since(rec.start).Milliseconds()}), "served"
}

// upstreamDurationMS reads a serve's "duration" (seconds, as in OpenAI's
// verbose transcription format) when the router could not measure it.
func upstreamDurationMS(raw json.RawMessage) (int64, bool) {
	var sec float64
	if len(raw) == 0 || json.Unmarshal(raw, &sec) != nil || sec < 0 || sec > 1e7 {
		return 0, false
	}
	return int64(sec * 1000), true
}

// pcmContentTypes are the reply types that carry raw 16-bit PCM.
var pcmContentTypes = map[string]bool{"audio/pcm": true, "audio/l16": true, "application/octet-stream": true}

// speechReply checks the serve's PCM (right type, whole samples) and
// renders the caller's answer; nil and a reason when unusable.
func speechReply(reply *backends.AudioReply, route *backends.AudioRoute, rec *record) ([]byte, string) {
	if mt, _, err := mime.ParseMediaType(reply.ContentType); err != nil || !pcmContentTypes[mt] {
		return nil, "backend_error_content_type"
	}
	if len(reply.Body) == 0 || len(reply.Body)%2 != 0 {
		return nil, "backend_error_malformed"
	}
	return mustJSON(struct {
		AudioB64   string `json:"audio_b64"`
		Format     string `json:"format"`
		SampleRate int    `json:"sample_rate"`
		Model      string `json:"model"`
		RequestID  string `json:"request_id"`
		LatencyMS  int64  `json:"latency_ms"`
	}{base64.StdEncoding.EncodeToString(reply.Body), "pcm16", route.SourceSampleRate, route.Model, rec.requestID, time.Since(rec.start).Milliseconds()}), "served"
}

// optString reads an optional string member; null counts as absent.
func optString(req *jsonobj.Object, key string) (string, bool, *apiError) {
	raw := req.Get(key)
	if raw == nil || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false, errBadRequest(key + " must be a string")
	}
	return s, true, nil
}

// optInt reads an optional integer member (no fraction, no exponent, no
// boolean); null counts as absent.
func optInt(req *jsonobj.Object, key string) (int64, bool, *apiError) {
	raw := req.Get(key)
	if raw == nil || string(raw) == "null" {
		return 0, false, nil
	}
	var n int64
	if strings.ContainsAny(string(raw), ".eE") || json.Unmarshal(raw, &n) != nil {
		return 0, false, errBadRequest(key + " must be an integer")
	}
	return n, true, nil
}

// newAudioRequestID returns "aud_" and 32 hex digits from crypto/rand.
func newAudioRequestID() string {
	var raw [16]byte
	rand.Read(raw[:])
	return "aud_" + hex.EncodeToString(raw[:])
}
