package telemetry_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

var fixedNow = time.Unix(1_800_000_000, 250_000_000)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newRecorder(t *testing.T, opts telemetry.Options) *telemetry.Recorder {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	r, err := telemetry.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// served builds a served chat decision.
func served(route, tier string, prompt, completion int, latency float64) telemetry.Decision {
	return telemetry.Decision{
		Kind: "chat", Route: route, RequestedTier: tier, ServedTier: tier,
		Attempts: []telemetry.Attempt{{
			TierID: tier, Succeeded: true, Reason: "served",
			PromptTokens: prompt, CompletionTokens: completion, Outcome: "served",
		}},
		TotalPromptTokens: prompt, TotalCompletionTokens: completion,
		RequestBytes: 100, ResponseBytes: 200, LatencyMS: latency,
	}
}

// failed builds a decision where the tier was skipped.
func failed(route, tier, reason string) telemetry.Decision {
	return telemetry.Decision{
		Kind: "chat", Route: route, RequestedTier: tier,
		Attempts: []telemetry.Attempt{{TierID: tier, Reason: reason, Outcome: "skipped"}},
	}
}

func TestRingBounds(t *testing.T) {
	tests := []struct {
		name      string
		capacity  int
		records   int
		wantFirst int // index of the oldest record kept
	}{
		{"empty", 3, 0, 0},
		{"partly full", 3, 2, 0},
		{"exactly full", 3, 3, 0},
		{"wrapped once", 3, 5, 2},
		{"wrapped many times", 3, 31, 28},
		{"capacity one", 1, 4, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, telemetry.Options{Capacity: tc.capacity})
			for i := range tc.records {
				r.Record(served(fmt.Sprint("r", i), "t", i, 0, 1))
			}
			got := r.Snapshot()
			want := min(tc.records, tc.capacity)
			if len(got) != want || r.Len() != want {
				t.Fatalf("kept %d (Len %d), want %d", len(got), r.Len(), want)
			}
			for i, d := range got {
				if wantRoute := fmt.Sprint("r", tc.wantFirst+i); d.Route != wantRoute {
					t.Errorf("record %d route %q, want %q (oldest first)", i, d.Route, wantRoute)
				}
			}
		})
	}
}

func TestDefaultCapacity(t *testing.T) {
	r := newRecorder(t, telemetry.Options{})
	if r.Capacity() != telemetry.DefaultCapacity {
		t.Errorf("capacity %d", r.Capacity())
	}
	if _, err := telemetry.New(telemetry.Options{Capacity: -1}); err == nil {
		t.Error("negative capacity accepted")
	}
}

func TestSnapshotIsIndependent(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Capacity: 2})
	r.Record(served("one", "t", 1, 0, 1))
	snap := r.Snapshot()
	r.Record(served("two", "t", 2, 0, 1))
	r.Record(served("three", "t", 3, 0, 1))
	if len(snap) != 1 || snap[0].Route != "one" {
		t.Errorf("snapshot changed: %+v", snap)
	}
	snap[0].Route = "mutated"
	if got := r.Snapshot(); got[0].Route != "two" || got[1].Route != "three" {
		t.Errorf("ring after mutation of a snapshot: %q, %q", got[0].Route, got[1].Route)
	}
}

func TestRecordCleansFields(t *testing.T) {
	tests := []struct {
		name  string
		alias []string
		in    telemetry.Decision
		check func(t *testing.T, d telemetry.Decision)
	}{
		{"fills unix_ts", nil, telemetry.Decision{Route: "a"}, func(t *testing.T, d telemetry.Decision) {
			if d.UnixTS != 1_800_000_000.25 {
				t.Errorf("unix_ts %v", d.UnixTS)
			}
		}},
		{"keeps unix_ts", nil, telemetry.Decision{UnixTS: 42.5}, func(t *testing.T, d telemetry.Decision) {
			if d.UnixTS != 42.5 {
				t.Errorf("unix_ts %v", d.UnixTS)
			}
		}},
		{"non-finite latency", nil, telemetry.Decision{LatencyMS: math.NaN()}, func(t *testing.T, d telemetry.Decision) {
			if d.LatencyMS != 0 {
				t.Errorf("latency %v", d.LatencyMS)
			}
		}},
		{"invalid correlation ids dropped", nil, telemetry.Decision{
			RequestID: "bad id", WorkbenchRunID: "-lead", TaskID: "task-1",
		}, func(t *testing.T, d telemetry.Decision) {
			if d.RequestID != "" || d.WorkbenchRunID != "" || d.TaskID != "task-1" {
				t.Errorf("ids %q %q %q", d.RequestID, d.WorkbenchRunID, d.TaskID)
			}
		}},
		{"configured alias normalized", []string{"llm.primary"}, telemetry.Decision{Route: " LLM.Primary "}, func(t *testing.T, d telemetry.Decision) {
			if d.Route != "llm.primary" {
				t.Errorf("route %q", d.Route)
			}
		}},
		{"purpose route kept", []string{"llm.primary"}, telemetry.Decision{Route: "embedding"}, func(t *testing.T, d telemetry.Decision) {
			if d.Route != "embedding" {
				t.Errorf("route %q", d.Route)
			}
		}},
		{"caller string never stored", []string{"llm.primary"}, telemetry.Decision{Route: "evil\n{}"}, func(t *testing.T, d telemetry.Decision) {
			if d.Route != "unknown" {
				t.Errorf("route %q", d.Route)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder(t, telemetry.Options{Capacity: 1, Aliases: tc.alias})
			r.Record(tc.in)
			tc.check(t, r.Snapshot()[0])
		})
	}
}

func TestConcurrentRecordAndRead(t *testing.T) {
	r := newRecorder(t, telemetry.Options{Capacity: 64, LogPath: filepath.Join(t.TempDir(), "d.jsonl")})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				d := served("a", "t", i, 1, float64(i))
				d.RequestID = fmt.Sprintf("w%d-%d", w, i)
				r.Record(d)
			}
		})
		wg.Go(func() {
			for range 100 {
				if s := r.Snapshot(); len(s) > 64 {
					t.Errorf("snapshot of %d", len(s))
				}
			}
		})
	}
	wg.Wait()
	if r.Len() != 64 {
		t.Errorf("Len %d", r.Len())
	}
}

func TestNewFailsOnUnwritableLog(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		skip bool
	}{
		{"missing directory", filepath.Join(dir, "nope", "d.jsonl"), false},
		{"parent is a file", filepath.Join(file, "d.jsonl"), false},
		{"read-only directory", filepath.Join(ro, "d.jsonl"), os.Geteuid() == 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("root ignores directory permissions")
			}
			r, err := telemetry.New(telemetry.Options{LogPath: tc.path, Logger: quietLogger()})
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestJSONLSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	r := newRecorder(t, telemetry.Options{LogPath: path})
	d := served("llm.primary", "qwen-a", 100, 20, 50)
	d.RequestID = "req_123"
	r.Record(d)
	r.Record(failed("llm.primary", "qwen-a", "unavailable"))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	// Keys sorted, attempts' keys too, every field present.
	const want = `{"attempts":[{"completion_tokens":20,"outcome":"served","prompt_tokens":100,"reason":"served","succeeded":true,"tier_id":"qwen-a"}],` +
		`"kind":"chat","latency_ms":50,"request_bytes":100,"request_id":"req_123","requested_tier":"qwen-a","response_bytes":200,` +
		`"route":"llm.primary","served_tier":"qwen-a","task_id":null,"total_completion_tokens":20,"total_prompt_tokens":100,` +
		`"unix_ts":1800000000.25,"workbench_run_id":null}`
	if first != want {
		t.Errorf("line\n%s\nwant\n%s", first, want)
	}
	lines := readJSONL(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	if lines[1]["served_tier"] != nil || lines[1]["request_id"] != nil {
		t.Errorf("unserved record: %v", lines[1])
	}
	// Records after Close stay in memory only.
	r.Record(served("late", "t", 1, 1, 1))
	if n := len(readJSONL(t, path)); n != 2 || r.Len() != 3 {
		t.Errorf("after Close: %d lines, %d records", n, r.Len())
	}
}

func TestJSONLSinkRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	r := newRecorder(t, telemetry.Options{LogPath: path, LogMaxBytes: 1024})
	const n = 20 // ~330 bytes each: rotates several times
	for i := range n {
		d := served("llm.primary", "qwen-a", i, 0, 1)
		d.RequestID = fmt.Sprintf("req-%02d", i)
		r.Record(d)
	}
	r.Close()
	old, cur := readJSONL(t, path+".1"), readJSONL(t, path)
	if len(old) == 0 {
		t.Fatal("no rotated generation")
	}
	st, _ := os.Stat(path + ".1")
	if st.Size() < 1024 || st.Size() > 1024+400 {
		t.Errorf("rotated file is %d bytes", st.Size())
	}
	all := append(old, cur...)
	for i, m := range all {
		want := fmt.Sprintf("req-%02d", n-len(all)+i)
		if m["request_id"] != want || m["unix_ts"] == nil {
			t.Errorf("line %d: request_id %v unix_ts %v, want %s", i, m["request_id"], m["unix_ts"], want)
		}
	}
}

func TestDecisionJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(telemetry.Decision{Attempts: []telemetry.Attempt{{}}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kind":"","route":"","requested_tier":"","served_tier":"","attempts":[{"tier_id":"","succeeded":false,"reason":"","prompt_tokens":0,"completion_tokens":0,"outcome":""}],` +
		`"total_prompt_tokens":0,"total_completion_tokens":0,"request_bytes":0,"response_bytes":0,"latency_ms":0,"request_id":"","workbench_run_id":"","task_id":"","unix_ts":0}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
