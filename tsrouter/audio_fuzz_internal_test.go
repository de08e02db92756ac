package tsrouter

import (
	"encoding/base64"
	"testing"
)

// FuzzWAVDuration: any bytes give a duration or "cannot say", never a
// panic; a canonical file the router wrapped itself reports its true
// length.
func FuzzWAVDuration(f *testing.F) {
	f.Add(wrapPCM16(make([]byte, 32000), 16000), 0)
	f.Add(wrapPCM16(nil, 8000), 0)
	f.Add([]byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"), 0)
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEdata\xff\xff\xff\xff"), 0)
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3, 0, 0}, 0)
	f.Add([]byte("pcm"), 16000)
	f.Fuzz(func(t *testing.T, b []byte, rate int) {
		ms, ok := wavDurationMS(b)
		if ok && ms < 0 {
			t.Fatalf("negative duration %d", ms)
		}
		looksLikeWebM(b)
		if rate <= 0 || rate > 384000 || len(b)%2 != 0 {
			return
		}
		wav := wrapPCM16(b, rate)
		got, ok := wavDurationMS(wav)
		if want := int64(len(b)) * 1000 / int64(rate*2); !ok || got != want {
			t.Fatalf("wrapped %d bytes at %d Hz: %d ms, %v; want %d", len(b), rate, got, ok, want)
		}
	})
}

// FuzzStrictBase64: only canonical padded standard base64 decodes, and what
// decodes re-encodes to the same text.
func FuzzStrictBase64(f *testing.F) {
	for _, s := range []string{"", "aGVsbG8=", "aGVsbG8", "aGVs\nbG8=", "aGVsbG9=", "a-_b", "////", "YQ=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, ok := decodeStrictBase64(s)
		if !ok {
			return
		}
		if base64.StdEncoding.EncodeToString(b) != s {
			t.Fatalf("%q decoded to %q, which encodes differently", s, b)
		}
	})
}
