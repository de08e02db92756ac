package fakeserve

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// The OpenAI-compatible audio endpoints: speech-to-text (multipart upload,
// as vLLM's Whisper serving takes it) and text-to-speech (JSON in, raw
// 16-bit little-endian mono PCM out, as OpenAI-style TTS serves answer
// response_format "pcm"). Both are deterministic so a router's audio
// gateway can be tested byte for byte. Modes 400, 500, 503, hang and refuse
// apply to them as to chat; the audio-* modes below exist for audio only.
const (
	transcriptionsPath = "/v1/audio/transcriptions"
	speechPath         = "/v1/audio/speech"
)

// Audio failure modes. They change only the answers of the two audio
// endpoints.
const (
	// ModeAudioWrongType answers 200 with a content type the router must
	// not accept: text/plain for a transcription, audio/mpeg for speech.
	ModeAudioWrongType Mode = "audio-wrong-type"
	// ModeAudioMalformed answers a transcription with a JSON object that
	// has no "text" and speech with an odd number of PCM bytes (no whole
	// 16-bit sample at the end).
	ModeAudioMalformed Mode = "audio-malformed"
	// ModeAudioRedirect answers 307 pointing at the same endpoint with
	// ?followed=1, where it would answer normally: a client that follows
	// redirects gets a 200 it must not get.
	ModeAudioRedirect Mode = "audio-redirect"
)

// SpeechBytesPerChar is how many PCM bytes speech returns per input
// character (50 samples of 16 bits).
const SpeechBytesPerChar = 100

// AudioStats counts audio requests.
type AudioStats struct {
	// Transcriptions and Speeches count requests received per endpoint.
	Transcriptions int64 `json:"transcriptions"`
	Speeches       int64 `json:"speeches"`
	// InFlight is the number of audio requests being answered now.
	InFlight int64 `json:"in_flight"`
	// Cancelled counts audio requests whose client went away first.
	Cancelled int64 `json:"cancelled"`
}

// AudioUpload is the last transcription upload the serve parsed.
type AudioUpload struct {
	// Fields are the multipart field names in the order received.
	Fields []string
	// Model is the "model" field.
	Model string
	// FileName and ContentType are the "file" part's.
	FileName    string
	ContentType string
	// File is the uploaded audio.
	File []byte
}

// audioState is the audio endpoints' counters and last upload.
type audioState struct {
	transcriptions atomic.Int64
	speeches       atomic.Int64
	inFlight       atomic.Int64
	cancelled      atomic.Int64

	mu     sync.Mutex
	upload AudioUpload
}

// AudioStats returns a snapshot of the audio counters.
func (s *Server) AudioStats() AudioStats {
	return AudioStats{
		Transcriptions: s.audio.transcriptions.Load(),
		Speeches:       s.audio.speeches.Load(),
		InFlight:       s.audio.inFlight.Load(),
		Cancelled:      s.audio.cancelled.Load(),
	}
}

// LastAudioUpload returns a copy of the last parsed transcription upload
// (the zero AudioUpload if none arrived yet).
func (s *Server) LastAudioUpload() AudioUpload {
	s.audio.mu.Lock()
	defer s.audio.mu.Unlock()
	u := s.audio.upload
	u.Fields = slices.Clone(u.Fields)
	u.File = slices.Clone(u.File)
	return u
}

// TranscriptFor is the text a transcription of file returns: derived from
// the audio only, so a test can predict it.
func TranscriptFor(file []byte, ext string) string {
	return fmt.Sprintf("heard %d bytes of %s", len(file), ext)
}

// SpeechPCM is the PCM speech returns for input: SpeechBytesPerChar bytes
// per character, samples derived from a hash of the input.
func SpeechPCM(input string) []byte {
	n := utf8.RuneCountInString(input) * SpeechBytesPerChar / 2
	h := fnv.New64a()
	h.Write([]byte(input))
	x := h.Sum64() | 1
	out := make([]byte, 2*n)
	for i := range n {
		// xorshift: cheap, deterministic, looks like noise.
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint16(out[2*i:], uint16(x))
	}
	return out
}

// audioPrologue runs what both audio endpoints share: method, API key,
// counters, and the modes that answer before the body is looked at. It
// returns the body, or ok false when the request has been answered.
func (s *Server) audioPrologue(w http.ResponseWriter, r *http.Request, counter *atomic.Int64) (body []byte, mode Mode, ok bool) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return nil, "", false
	}
	counter.Add(1)
	if !s.plan.Load().authorized(r) {
		writeJSON(w, http.StatusUnauthorized, bodyUnauthorized)
		return nil, "", false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return nil, "", false
	}
	s.record(r, body)
	mode = s.Mode()
	if r.URL.Query().Get("followed") == "1" {
		mode = ModeOK
	}
	switch mode {
	case ModeStatus400:
		writeJSON(w, http.StatusBadRequest, errorBody("audio rejected (fake serve in mode 400).", "BadRequestError", "", 400))
		return nil, "", false
	case ModeStatus500:
		writeJSON(w, http.StatusInternalServerError, body500)
		return nil, "", false
	case ModeStatus503:
		writeJSON(w, http.StatusServiceUnavailable, body503)
		return nil, "", false
	case ModeHang:
		<-r.Context().Done()
		s.audio.cancelled.Add(1)
		panic(http.ErrAbortHandler) // never answer
	case ModeAudioRedirect:
		w.Header().Set("Location", r.URL.Path+"?followed=1")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil, "", false
	}
	return body, mode, true
}

// serveTranscription answers POST /v1/audio/transcriptions: a multipart
// form with "model" (the served model) and "file" (audio.wav as audio/wav
// or audio.webm as audio/webm), answered with {"text": ...}.
func (s *Server) serveTranscription(w http.ResponseWriter, r *http.Request) {
	s.audio.inFlight.Add(1)
	defer s.audio.inFlight.Add(-1)
	body, mode, ok := s.audioPrologue(w, r, &s.audio.transcriptions)
	if !ok {
		return
	}
	bad := func(msg string) {
		writeJSON(w, http.StatusBadRequest, errorBody(msg, "BadRequestError", "", 400))
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		bad("expected multipart/form-data")
		return
	}
	var up AudioUpload
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			bad("malformed multipart body")
			return
		}
		data, err := io.ReadAll(part)
		if err != nil {
			bad("malformed multipart part")
			return
		}
		up.Fields = append(up.Fields, part.FormName())
		switch part.FormName() {
		case "model":
			up.Model = string(data)
		case "file":
			up.FileName, up.ContentType, up.File = part.FileName(), part.Header.Get("Content-Type"), data
		}
	}
	s.audio.mu.Lock()
	s.audio.upload = up
	s.audio.mu.Unlock()
	p := s.plan.Load()
	ext := path.Ext(up.FileName)
	switch {
	case up.Model == "":
		bad("field model is required")
		return
	case up.Model != p.opts.Model:
		writeJSON(w, http.StatusNotFound, errorBody("The model `"+up.Model+"` does not exist.", "NotFoundError", "model", 404))
		return
	case len(up.File) == 0:
		bad("field file is required")
		return
	case !(ext == ".wav" && up.ContentType == "audio/wav" || ext == ".webm" && up.ContentType == "audio/webm"):
		bad("file must be audio.wav (audio/wav) or audio.webm (audio/webm)")
		return
	}
	switch mode {
	case ModeAudioWrongType:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(TranscriptFor(up.File, ext[1:])))
		return
	case ModeAudioMalformed:
		writeJSON(w, http.StatusOK, []byte(`{"transcript":"no text field"}`))
		return
	}
	out, _ := json.Marshal(map[string]string{"text": TranscriptFor(up.File, ext[1:])})
	writeJSON(w, http.StatusOK, out)
}

// serveSpeech answers POST /v1/audio/speech: JSON {"model","input",
// "response_format":"pcm"} answered with SpeechPCM(input) as audio/pcm.
func (s *Server) serveSpeech(w http.ResponseWriter, r *http.Request) {
	s.audio.inFlight.Add(1)
	defer s.audio.inFlight.Add(-1)
	body, mode, ok := s.audioPrologue(w, r, &s.audio.speeches)
	if !ok {
		return
	}
	var req struct {
		Model          string `json:"model"`
		Input          string `json:"input"`
		ResponseFormat string `json:"response_format"`
	}
	switch {
	case json.Unmarshal(body, &req) != nil:
		writeJSON(w, http.StatusBadRequest, errorBody("invalid JSON", "BadRequestError", "", 400))
		return
	case req.Model != s.plan.Load().opts.Model:
		writeJSON(w, http.StatusNotFound, errorBody("The model `"+req.Model+"` does not exist.", "NotFoundError", "model", 404))
		return
	case req.Input == "" || req.ResponseFormat != "pcm":
		writeJSON(w, http.StatusBadRequest, errorBody("input and response_format \"pcm\" are required", "BadRequestError", "", 400))
		return
	}
	pcm := SpeechPCM(req.Input)
	ct := "audio/pcm"
	switch mode {
	case ModeAudioWrongType:
		ct = "audio/mpeg"
	case ModeAudioMalformed:
		pcm = append(pcm, 0x7f)
	}
	w.Header().Set("Content-Type", ct)
	w.Write(pcm)
}
