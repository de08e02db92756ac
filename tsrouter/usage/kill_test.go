package usage_test

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// snapshotWriterEnv makes the test binary a process that does nothing but
// write snapshots of a busy store to the named path, as fast as it can.
const snapshotWriterEnv = "ANVIL_USAGE_SNAPSHOT_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(snapshotWriterEnv); path != "" {
		c := &clock{time.Now()}
		s := usage.New(usage.Options{Retention: 7 * 24 * time.Hour, Aliases: aliasNames(20), Now: c.now})
		fill(s, c, 100, 20, 7*24*time.Hour)
		h := s.Handle(&usage.Identity{User: "busy"})
		for {
			s.Record(h, &usage.Sample{Time: c.now(), Alias: "alias-1", InputTokens: 1})
			if err := s.Save(path); err != nil {
				os.Exit(3)
			}
		}
	}
	os.Exit(m.Run())
}

// TestSnapshotSurvivesKill9: a process writing snapshots back to back is
// killed with SIGKILL at random moments, over and over; after every kill
// the snapshot on disk loads.
func TestSnapshotSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a process 20 times")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stats.bin")
	for i := range 20 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), snapshotWriterEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it write at least one snapshot, then kill it mid-whatever.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		r := usage.New(usage.Options{Retention: 7 * 24 * time.Hour, Aliases: aliasNames(20)})
		if err := r.Load(path, 0); err != nil {
			t.Fatalf("kill %d: snapshot does not load: %v", i, err)
		}
		if g := r.Groups(usage.KindUser); len(g) != 101 {
			t.Fatalf("kill %d: restored %d users, want 101", i, len(g))
		}
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	t.Logf("temporary files left by the kills: %d (serve removes them at start)", len(matches))
}
