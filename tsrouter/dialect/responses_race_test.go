//go:build race

package dialect_test

// raceEnabled: under the race detector sync.Pool drops items on purpose,
// so json.Valid's pooled scanner allocates; allocation counts mean nothing.
const raceEnabled = true
