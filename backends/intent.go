package backends

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/anvil-serving/anvil-router/state"
)

// promotionReason marks a quiesce taken during a model promotion
// (ADR-0018): it is not restored after a restart, because the restart is
// part of the promotion and readmission follows from it.
const promotionReason = "promotion"

// PersistIntent makes quiesce intent durable at path (ADR-0033): it
// restores the intent written by a previous run (unknown tiers are ignored
// with a warning, promotion quiesces are not restored), rewrites the file
// at once (so an unwritable path fails the start, not a later quiesce),
// and saves it again after every effective quiesce or readmit.
func (s *Set) PersistIntent(path string, log *slog.Logger) error {
	in, err := state.LoadQuiesceIntent(path)
	if err != nil {
		return err
	}
	for id, reason := range in.Tiers {
		t, ok := s.Tier(id)
		switch {
		case !ok:
			log.Warn("quiesce intent names an unknown tier; ignored", "tier", id)
		case reason == promotionReason:
			log.Info("not restoring a promotion quiesce", "tier", id)
		default:
			t.restoreQuiesced(reason)
			log.Info("tier restored as quiesced", "tier", id, "reason", reason)
		}
	}
	var mu sync.Mutex
	save := func() error {
		mu.Lock()
		defer mu.Unlock()
		return state.SaveQuiesceIntent(path, s.intent())
	}
	if err := save(); err != nil {
		return fmt.Errorf("quiesce intent %s is not writable: %w", path, err)
	}
	s.OnAdmissionChange(func() {
		if err := save(); err != nil {
			log.Error("saving quiesce intent failed; it will not survive a restart", "path", path, "err", err)
		}
	})
	return nil
}

// intent is the current quiesced set.
func (s *Set) intent() state.QuiesceIntent {
	in := state.QuiesceIntent{Tiers: map[string]string{}}
	for _, t := range s.tiers {
		if snap := t.Snapshot(); snap.State == StateQuiesced {
			in.Tiers[t.ID] = snap.Reason
		}
	}
	return in
}
