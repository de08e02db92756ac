package fakeserve_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// multipartBody builds a transcription upload; an empty fileType leaves
// the file part out, an empty model the model field.
func multipartBody(t *testing.T, model, fileName, fileType string, file []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if model != "" {
		mw.WriteField("model", model)
	}
	if fileType != "" {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="`+fileName+`"`)
		h.Set("Content-Type", fileType)
		p, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		p.Write(file)
	}
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// TestAudioEndpoints: the fake's own checks of the audio uploads and
// requests, so router tests can rely on a 200 meaning the router sent
// what a serve expects.
func TestAudioEndpoints(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{Model: "whisper", APIKey: "k"})
	wav := []byte("RIFF....WAVEfmt ")
	type audioCase struct {
		name        string
		path        string
		contentType string
		body        []byte // nil: a good wav upload
		key         string
		want        int
		wantBody    []byte
		wantType    string
	}
	tests := []audioCase{
		{name: "wav upload", path: "/v1/audio/transcriptions", key: "k", want: 200, wantBody: []byte(`{"text":"heard 16 bytes of wav"}`)},
		{name: "no key", path: "/v1/audio/transcriptions", want: 401},
		{name: "not multipart", path: "/v1/audio/transcriptions", key: "k", contentType: "application/json", body: []byte(`{}`), want: 400},
		{name: "speech", path: "/v1/audio/speech", key: "k", contentType: "application/json", body: []byte(`{"model":"whisper","input":"hey","response_format":"pcm"}`), want: 200, wantBody: fakeserve.SpeechPCM("hey"), wantType: "audio/pcm"},
		{name: "speech in mp3", path: "/v1/audio/speech", key: "k", contentType: "application/json", body: []byte(`{"model":"whisper","input":"hey","response_format":"mp3"}`), want: 400},
		{name: "speech for another model", path: "/v1/audio/speech", key: "k", contentType: "application/json", body: []byte(`{"model":"x","input":"hey","response_format":"pcm"}`), want: 404},
	}
	uploads := []struct {
		name, model, fileName, fileType string
		want                            int
	}{
		{"missing model", "", "audio.wav", "audio/wav", 400},
		{"another model", "other", "audio.wav", "audio/wav", 404},
		{"missing file", "whisper", "", "", 400},
		{"file type and name disagree", "whisper", "audio.wav", "audio/webm", 400},
		{"webm", "whisper", "audio.webm", "audio/webm", 200},
	}
	for _, u := range uploads {
		ct, body := multipartBody(t, u.model, u.fileName, u.fileType, wav)
		tests = append(tests, audioCase{name: u.name, path: "/v1/audio/transcriptions", contentType: ct, body: body, key: "k", want: u.want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.contentType, tc.body
			if body == nil {
				ct, body = multipartBody(t, "whisper", "audio.wav", "audio/wav", wav)
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+tc.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", ct)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
			if tc.wantBody != nil && !bytes.Equal(got, tc.wantBody) {
				t.Errorf("body %q, want %q", got, tc.wantBody)
			}
			if tc.wantType != "" && resp.Header.Get("Content-Type") != tc.wantType {
				t.Errorf("content type %q, want %q", resp.Header.Get("Content-Type"), tc.wantType)
			}
		})
	}
	if up := s.LastAudioUpload(); up.FileName != "audio.webm" || !bytes.Equal(up.File, wav) || up.Model != "whisper" {
		t.Errorf("last upload %+v", up)
	}
	if st := s.AudioStats(); st.Speeches != 3 || st.InFlight != 0 {
		t.Errorf("stats %+v, want 3 speeches and none in flight", st)
	}
	if len(fakeserve.SpeechPCM("héllo"))%2 != 0 || len(fakeserve.SpeechPCM("héllo")) != 5*fakeserve.SpeechBytesPerChar {
		t.Error("speech must be whole 16-bit samples, SpeechBytesPerChar per character")
	}
}

// TestAudioModes: the audio failure modes switch over /fake/mode too.
func TestAudioModes(t *testing.T) {
	for _, m := range []fakeserve.Mode{fakeserve.ModeAudioWrongType, fakeserve.ModeAudioMalformed, fakeserve.ModeAudioRedirect} {
		if got, err := fakeserve.ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	s, base, c := serve(t, fakeserve.Options{Model: "tts"})
	body := `{"model":"tts","input":"hey","response_format":"pcm"}`
	tests := []struct {
		mode     fakeserve.Mode
		want     int
		wantType string
		wantLen  int
	}{
		{fakeserve.ModeAudioWrongType, 200, "audio/mpeg", 300},
		{fakeserve.ModeAudioMalformed, 200, "audio/pcm", 301},
		{fakeserve.ModeAudioRedirect, 307, "", 0},
		{fakeserve.ModeStatus500, 500, "application/json", -1},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			s.SetMode(tc.mode)
			defer s.SetMode(fakeserve.ModeOK)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/audio/speech", bytes.NewReader([]byte(body)))
			resp, err := c.Transport.RoundTrip(req) // no redirect following
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || resp.Header.Get("Content-Type") != tc.wantType || tc.wantLen >= 0 && len(got) != tc.wantLen {
				t.Errorf("%d %q %d bytes, want %d %q %d", resp.StatusCode, resp.Header.Get("Content-Type"), len(got), tc.want, tc.wantType, tc.wantLen)
			}
			if tc.mode == fakeserve.ModeAudioRedirect && resp.Header.Get("Location") != "/v1/audio/speech?followed=1" {
				t.Errorf("Location %q", resp.Header.Get("Location"))
			}
		})
	}
}
