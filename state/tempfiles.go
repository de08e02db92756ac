package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// staleTempAge is how old a temporary file must be before RemoveStaleTemps
// takes it for debris: far longer than any write takes, so a write in
// progress (another process's `keys create`) is never touched.
const staleTempAge = time.Minute

// RemoveStaleTemps deletes the temporary files WriteFileAtomic leaves
// beside path when the process is killed mid-write (".<name>.tmp-*",
// older than a minute). They can hold digests of rotated-away keys, and
// nothing else ever removes them. Call it at start. It returns how many
// files it removed; a missing directory is not an error.
func RemoveStaleTemps(path string) (int, error) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+".tmp-"
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleTempAge {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
