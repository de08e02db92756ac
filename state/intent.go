package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

// QuiesceIntent is the persisted operator intent of ADR-0033: which tiers
// are quiesced and why. Only the quiesced side is stored; readmission
// always re-runs the identity gate.
type QuiesceIntent struct {
	// Tiers maps tier id to its quiesce reason.
	Tiers map[string]string
}

type intentFile struct {
	Version int                    `json:"version"`
	Tiers   map[string]intentEntry `json:"tiers"`
}

type intentEntry struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// LoadQuiesceIntent reads the intent file. A missing file is an empty
// intent; an unreadable or corrupt one is an error, and the router refuses
// to start rather than silently readmit tiers an operator took out.
func LoadQuiesceIntent(path string) (QuiesceIntent, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return QuiesceIntent{Tiers: map[string]string{}}, nil
	}
	if err != nil {
		return QuiesceIntent{}, fmt.Errorf("quiesce intent %s: %w", path, err)
	}
	var f struct {
		Version int                         `json:"version"`
		Tiers   map[string]*json.RawMessage `json:"tiers"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Tiers == nil {
		return QuiesceIntent{}, fmt.Errorf("quiesce intent %s is corrupt (want {\"version\":1,\"tiers\":{...}}); fix or remove it to start", path)
	}
	in := QuiesceIntent{Tiers: map[string]string{}}
	for id, raw := range f.Tiers {
		var e intentEntry
		if raw == nil || json.Unmarshal(*raw, &e) != nil || e.State != "quiesced" {
			return QuiesceIntent{}, fmt.Errorf("quiesce intent %s: entry %q is corrupt; fix or remove the file to start", path, id)
		}
		in.Tiers[id] = e.Reason
	}
	return in, nil
}

// SaveQuiesceIntent writes the intent atomically, compact with sorted keys.
func SaveQuiesceIntent(path string, in QuiesceIntent) error {
	f := intentFile{Version: 1, Tiers: map[string]intentEntry{}}
	ids := make([]string, 0, len(in.Tiers))
	for id := range in.Tiers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f.Tiers[id] = intentEntry{State: "quiesced", Reason: in.Tiers[id]}
	}
	b, err := json.Marshal(f) // map keys are sorted by encoding/json
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}
