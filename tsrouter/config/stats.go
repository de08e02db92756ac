package config

import (
	"strconv"
	"strings"
	"time"
)

// Stats is [admin.stats]: usage accounting by identity, its retention
// window and its snapshot across restarts.
type Stats struct {
	// Enabled turns usage accounting on (default true).
	Enabled bool
	// RetentionWindow is what the windowed views cover (default 24h).
	RetentionWindow time.Duration
	// TokenTracking counts tokens, not only requests (default true).
	TokenTracking bool
	// Persistence is [admin.stats.persistence].
	Persistence StatsPersistence
}

// StatsPersistence is [admin.stats.persistence].
type StatsPersistence struct {
	// Enabled saves and restores the counts (default true).
	Enabled bool
	// Path is the snapshot file; empty means anvil-usage.snapshot in the
	// state directory (see cmd/anvil-router).
	Path string
	// SnapshotInterval is how often a snapshot is written (default 5m).
	SnapshotInterval time.Duration
	// MaxAge: an older snapshot is not restored (default 7d).
	MaxAge time.Duration
}

// DefaultStats is [admin.stats] when it is absent.
func DefaultStats() Stats {
	return Stats{Enabled: true, RetentionWindow: 24 * time.Hour, TokenTracking: true,
		Persistence: StatsPersistence{Enabled: true, SnapshotInterval: 5 * time.Minute, MaxAge: 7 * 24 * time.Hour}}
}

var (
	statsKeys       = []string{"enabled", "retention_window", "token_tracking", "persistence"}
	persistenceKeys = []string{"enabled", "path", "snapshot_interval", "max_age"}
)

// MaxRetentionWindow bounds [admin.stats].retention_window: a year and a
// month, so a year-on-year look back fits.
const MaxRetentionWindow = 400 * 24 * time.Hour

func parseStats(t table) Stats {
	t.unknown(statsKeys, "[admin.stats]")
	s := DefaultStats()
	if v, ok := t.boolean("enabled"); ok {
		s.Enabled = v
	}
	if v, ok := t.boolean("token_tracking"); ok {
		s.TokenTracking = v
	}
	s.RetentionWindow = t.statsDuration("retention_window", s.RetentionWindow)
	if s.RetentionWindow > MaxRetentionWindow {
		// A day bucket per day of the window, per identity and alias: the
		// memory bound (README) holds only for windows of bounded length.
		t.c.report(t.path.key("retention_window"), "must be at most %dd, got %s", int(MaxRetentionWindow/(24*time.Hour)), s.RetentionWindow)
		s.RetentionWindow = DefaultStats().RetentionWindow
	}
	if p, ok := t.sub("persistence"); ok {
		p.unknown(persistenceKeys, "[admin.stats.persistence]")
		if v, ok := p.boolean("enabled"); ok {
			s.Persistence.Enabled = v
		}
		if p.has("path") {
			s.Persistence.Path = p.nonEmptyPath("path")
		}
		s.Persistence.SnapshotInterval = p.statsDuration("snapshot_interval", s.Persistence.SnapshotInterval)
		s.Persistence.MaxAge = p.statsDuration("max_age", s.Persistence.MaxAge)
	}
	return s
}

// statsDuration reads a duration in the seed's formats: a whole number
// followed by s, m, h or d ("30s", "5m", "1h", "7d"), > 0.
func (t table) statsDuration(key string, def time.Duration) time.Duration {
	s, ok := t.str(key)
	if !ok {
		return def
	}
	d, ok := ParseStatsDuration(s)
	if !ok {
		t.c.report(t.path.key(key), "must be a duration like \"30s\", \"5m\", \"1h\" or \"7d\", got %q", s)
		return def
	}
	return d
}

// ParseStatsDuration parses "30s", "5m", "1h", "7d" (a positive whole
// number and one unit).
func ParseStatsDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 {
		return 0, false
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if unit == 0 || err != nil || n <= 0 || n > int64(100*365*24*time.Hour/unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}
