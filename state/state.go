// Package state owns everything the router keeps on disk: the tsnet state
// directory, the key store, quiesce intent and the decision log. Every file
// is replaced atomically so a crash or power cut leaves either the old or the
// new content, never a torn mix.
package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory, fsyncs it, renames it over path and fsyncs the directory,
// so readers and a restarted router see the old or the new file whole.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// DefaultTailnetDir is where the router's tailnet node keeps its keys when
// neither [tailnet].state_dir nor TS_STATE_DIR says otherwise: a directory
// of its own under the user's config dir (~/.config/anvil-router/tailscale
// on Linux), so restarts reuse the enrolled node.
func DefaultTailnetDir() (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no state dir: set [tailnet].state_dir or TS_STATE_DIR (%w)", err)
	}
	return filepath.Join(base, "anvil-router", "tailscale"), nil
}
