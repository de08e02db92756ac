package telemetry

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Correlation headers, as the Python router read them. They are stored in decision records
// and never forwarded upstream.
const (
	HeaderRequestID       = "X-Request-Id"
	HeaderRequestIDLegacy = "Request-Id"
	HeaderWorkbenchRunID  = "X-Anvil-Workbench-Run-Id"
	HeaderTaskID          = "X-Anvil-Task-Id"
)

// ValidID reports whether s is an acceptable correlation id:
// ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$. Ids end up in JSON views, JSONL
// lines and log fields, so anything that could carry whitespace, control
// characters or free text is refused. Written out by hand because it runs
// on every request and a regexp would cost far more than the check.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// Correlation reads the correlation headers of a request. Values that fail
// ValidID are dropped silently (a bad id must not fail a model request).
// The request id comes from X-Request-Id, else Request-Id; when neither
// carries a valid id one is generated and generated is true, so the
// handler can return it in X-Request-Id and the caller can look the
// request up later in /v1/requests/{id}.
func Correlation(h http.Header) (requestID, workbenchRunID, taskID string, generated bool) {
	requestID = validHeader(h, HeaderRequestID)
	if requestID == "" {
		requestID = validHeader(h, HeaderRequestIDLegacy)
	}
	if requestID == "" {
		requestID, generated = NewRequestID(), true
	}
	return requestID, validHeader(h, HeaderWorkbenchRunID), validHeader(h, HeaderTaskID), generated
}

func validHeader(h http.Header, key string) string {
	if v := h.Get(key); ValidID(v) {
		return v
	}
	return ""
}

// NewRequestID returns "req_" and 24 hex digits from crypto/rand. Random
// rather than a counter so that one caller cannot guess another's ids and
// look up their records.
func NewRequestID() string {
	var raw [12]byte
	rand.Read(raw[:]) // never fails (crypto/rand, Go ≥ 1.24)
	var out [4 + 2*len(raw)]byte
	copy(out[:], "req_")
	hex.Encode(out[4:], raw[:])
	return string(out[:])
}
