package telemetry_test

import (
	"net/http"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// FuzzCorrelation: whatever the correlation headers carry, the ids that
// come out are valid ids (safe for log lines and URLs), and a valid
// X-Request-Id is kept as sent.
func FuzzCorrelation(f *testing.F) {
	f.Add("req_0123456789abcdef01234567", "", "run-1", "task.2")
	f.Add("", "legacy-id", "", "")
	f.Add("bad id\nwith newline", "ok:id", "\u202e", "a/b")
	f.Add("x", "y", "z", "")
	f.Fuzz(func(t *testing.T, reqID, legacy, run, task string) {
		h := http.Header{}
		h.Set(telemetry.HeaderRequestID, reqID)
		h.Set(telemetry.HeaderRequestIDLegacy, legacy)
		h.Set(telemetry.HeaderWorkbenchRunID, run)
		h.Set(telemetry.HeaderTaskID, task)
		id, gotRun, gotTask, generated := telemetry.Correlation(h)
		if !telemetry.ValidID(id) {
			t.Fatalf("request id %q is not valid", id)
		}
		if (gotRun != "" && !telemetry.ValidID(gotRun)) || (gotTask != "" && !telemetry.ValidID(gotTask)) {
			t.Fatalf("invalid ids passed: %q %q", gotRun, gotTask)
		}
		if v := h.Get(telemetry.HeaderRequestID); telemetry.ValidID(v) && (id != v || generated) {
			t.Fatalf("valid X-Request-Id %q replaced by %q", v, id)
		}
	})
}
