package guard

import (
	"strings"
	"testing"
)

// Without an external analyzer built in, a pii provider that asks for one
// fails to build, with a message that says so.
func TestPIIExternalUnavailable(t *testing.T) {
	saved := newExternalAnalyzer
	newExternalAnalyzer = nil
	t.Cleanup(func() { newExternalAnalyzer = saved })
	_, err := newPII(ProviderConfig{Name: "a", Options: map[string]any{"external": map[string]any{"endpoint": "http://127.0.0.1:9/analyze"}}}, Deps{})
	if err == nil || !strings.Contains(err.Error(), "no external analyzer") {
		t.Errorf("err = %v", err)
	}
}
