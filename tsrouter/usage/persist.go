package usage

import (
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// Restore loads the snapshot at path into s. A missing, corrupt or stale
// snapshot is not an error the router stops for: it starts fresh and says
// why (a warning; missing is only info on a first start).
func (s *Store) Restore(path string, maxAge time.Duration, log *slog.Logger) bool {
	err := s.Load(path, maxAge)
	switch {
	case err == nil:
		log.Info("usage statistics restored", "path", path, "since", s.Since())
		return true
	case errors.Is(err, fs.ErrNotExist):
		log.Info("no usage snapshot yet; starting fresh", "path", path)
	case errors.Is(err, ErrStale):
		log.Warn("usage snapshot is older than max_age; statistics start fresh, today's budget spends are kept", "path", path, "max_age", maxAge)
	default:
		log.Warn("usage snapshot unreadable; starting fresh", "path", path, "err", err)
	}
	return false
}

// PruneEvery prunes s every interval until stop is called (for a store
// that is not kept on disk; Keep prunes before each snapshot).
func (s *Store) PruneEvery(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.Prune()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// Keep writes a snapshot to path every interval until stop is called;
// stop writes a last one (the final snapshot on shutdown) and returns when
// it is on disk.
func (s *Store) Keep(path string, interval time.Duration, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	save := func(why string) {
		start := time.Now()
		if err := s.Save(path); err != nil {
			log.Warn("usage snapshot not written", "path", path, "why", why, "err", err)
			return
		}
		log.Debug("usage snapshot written", "path", path, "why", why, "ms", time.Since(start).Milliseconds())
	}
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.Prune()
				save("interval")
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			save("shutdown")
		})
	}
}
