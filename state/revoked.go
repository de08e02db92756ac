package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// MaxRevoked bounds the revoked-key list; past it the entries revoked
// longest ago are dropped.
const MaxRevoked = 10000

// RevokedPath is where the revoked digests of the key store at store are
// kept: beside it.
func RevokedPath(store string) string { return store + ".revoked" }

type revokedFile struct {
	Version int            `json:"version"`
	Revoked []revokedEntry `json:"revoked"`
}

type revokedEntry struct {
	SHA256 string    `json:"sha256"`
	Until  time.Time `json:"until,omitzero"`
}

// LoadRevoked reads the revoked key digests at path; a missing file is
// none, a corrupt one an error.
func LoadRevoked(path string) ([]policy.Revoked, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revoked keys %s: %w", path, err)
	}
	var f revokedFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		return nil, fmt.Errorf("revoked keys %s is corrupt; fix or remove it", path)
	}
	out := make([]policy.Revoked, 0, len(f.Revoked))
	for _, e := range f.Revoked {
		d, err := hex.DecodeString(e.SHA256)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("revoked keys %s is corrupt: a bad digest", path)
		}
		out = append(out, policy.Revoked{Digest: [32]byte(d), Until: e.Until})
	}
	return out, nil
}

// PruneRevoked is list without the entries expired at now, and without
// the oldest past MaxRevoked.
func PruneRevoked(list []policy.Revoked, now time.Time) []policy.Revoked {
	list = slices.DeleteFunc(slices.Clone(list), func(r policy.Revoked) bool { return !r.Until.IsZero() && !now.Before(r.Until) })
	if len(list) > MaxRevoked {
		list = list[len(list)-MaxRevoked:]
	}
	return list
}

// SaveRevoked writes the revoked digests still in force at now, atomically
// (0600).
func SaveRevoked(path string, list []policy.Revoked, now time.Time) error {
	f := revokedFile{Version: 1, Revoked: []revokedEntry{}}
	list = PruneRevoked(list, now)
	for _, r := range list {
		f.Revoked = append(f.Revoked, revokedEntry{SHA256: hex.EncodeToString(r.Digest[:]), Until: r.Until})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}
