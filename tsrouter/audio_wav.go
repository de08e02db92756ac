package tsrouter

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
)

// wavHeaderSize is the size of the canonical PCM WAV header wrapPCM16 writes.
const wavHeaderSize = 44

// wrapPCM16 puts raw 16-bit little-endian mono samples into a canonical
// WAV file (RIFF, "fmt " chunk for PCM, "data" chunk) — the form every
// Whisper-style serve accepts, since raw PCM carries no sample rate.
func wrapPCM16(pcm []byte, sampleRate int) []byte {
	out := make([]byte, wavHeaderSize, wavHeaderSize+len(pcm))
	le := binary.LittleEndian
	copy(out[0:], "RIFF")
	le.PutUint32(out[4:], uint32(36+len(pcm)))
	copy(out[8:], "WAVE")
	copy(out[12:], "fmt ")
	le.PutUint32(out[16:], 16)                   // fmt chunk size
	le.PutUint16(out[20:], 1)                    // PCM
	le.PutUint16(out[22:], 1)                    // mono
	le.PutUint32(out[24:], uint32(sampleRate))   // sample rate
	le.PutUint32(out[28:], uint32(sampleRate*2)) // byte rate
	le.PutUint16(out[32:], 2)                    // block align
	le.PutUint16(out[34:], 16)                   // bits per sample
	copy(out[36:], "data")
	le.PutUint32(out[40:], uint32(len(pcm)))
	return append(out, pcm...)
}

// looksLikeWAV checks the RIFF/WAVE signature (RF64 for files over 4 GiB
// is accepted too), so garbage is refused before it is uploaded.
func looksLikeWAV(b []byte) bool {
	return len(b) >= 12 && (bytes.HasPrefix(b, []byte("RIFF")) || bytes.HasPrefix(b, []byte("RF64"))) && string(b[8:12]) == "WAVE"
}

// looksLikeWebM checks the EBML magic every WebM file starts with.
func looksLikeWebM(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0x1a, 0x45, 0xdf, 0xa3})
}

// wavDurationMS reads a WAV file's length from its "fmt " byte rate and
// its "data" chunk size; ok is false when the header cannot say (then the
// response reports null rather than a guess).
func wavDurationMS(b []byte) (ms int64, ok bool) {
	if !looksLikeWAV(b) {
		return 0, false
	}
	le := binary.LittleEndian
	var byteRate uint32
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int64(le.Uint32(b[off+4:]))
		body := off + 8
		switch id {
		case "fmt ":
			if body+12 > len(b) {
				return 0, false
			}
			byteRate = le.Uint32(b[body+8:])
		case "data":
			if byteRate == 0 {
				return 0, false
			}
			// Streaming writers leave the size at 0 or 0xFFFFFFFF: the
			// data then runs to the end of the file.
			if rest := int64(len(b) - body); size == 0 || size > rest {
				size = rest
			}
			return size * 1000 / int64(byteRate), true
		}
		// Chunks are padded to an even size.
		next := int64(body) + size + size&1
		if next > int64(len(b)) {
			return 0, false
		}
		off = int(next)
	}
	return 0, false
}

// decodeStrictBase64 decodes standard, padded base64 and nothing else:
// no URL alphabet, no missing padding, no whitespace or line breaks
// (which Go's decoder would otherwise skip).
func decodeStrictBase64(s string) ([]byte, bool) {
	if len(s)%4 != 0 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' {
			return nil, false
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	return b, err == nil
}
