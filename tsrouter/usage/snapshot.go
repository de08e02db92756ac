package usage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"time"

	"github.com/anvil-serving/anvil-router/state"
)

// The snapshot is a compact binary file: a magic line, the format version,
// when it was written, every group's non-empty buckets, the budgets' day
// spends, and a CRC-32 of all of it. It is written with
// state.WriteFileAtomic (temporary file, fsync, rename), so a reader sees
// the old snapshot or the new one, never a torn one; the checksum catches
// what the disk did anyway.
const (
	snapshotMagic   = "ANVIL-USAGE\n"
	snapshotVersion = 2 // 2: GuardrailBlocks
)

// Snapshot errors: a snapshot that is missing, corrupt or stale is not
// restored (the router starts fresh and says why).
var (
	ErrCorrupt = errors.New("usage snapshot is corrupt")
	ErrStale   = errors.New("usage snapshot is older than max_age")
)

const (
	ringMinute byte = iota
	ringHour
	ringDay
)

// MarshalBinary encodes the store's counts with the time they were taken.
func (s *Store) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, max(1<<16, s.snapshotSize.Load()*9/8))
	b = append(b, snapshotMagic...)
	b = binary.AppendUvarint(b, snapshotVersion)
	b = binary.AppendVarint(b, s.now().Unix())
	type named struct {
		k    Kind
		name string
		g    *series
	}
	var all []named
	s.mu.RLock()
	for k := range s.groups {
		for name, g := range s.groups[k] {
			all = append(all, named{Kind(k), name, g})
		}
	}
	s.mu.RUnlock()
	all = append(all, named{numKinds, "", s.global})
	b = binary.AppendUvarint(b, uint64(len(all)))
	for _, n := range all {
		b = append(b, byte(n.k))
		b = appendString(b, n.name)
		n.g.mu.Lock()
		count := 0
		for _, ring := range [][]bucket{n.g.minute, n.g.hour, n.g.day} {
			for i := range ring {
				if ring[i].t != 0 {
					count++
				}
			}
		}
		b = binary.AppendUvarint(b, uint64(count))
		for r, ring := range [][]bucket{n.g.minute, n.g.hour, n.g.day} {
			for i := range ring {
				if bk := &ring[i]; bk.t != 0 {
					b = append(b, byte(r))
					b = binary.AppendVarint(b, bk.t)
					b = appendCounters(b, &bk.c)
				}
			}
		}
		n.g.mu.Unlock()
	}
	s.budgets.mu.Lock()
	b = binary.AppendUvarint(b, uint64(len(s.budgets.use)))
	for name, u := range s.budgets.use {
		b = appendString(b, name)
		b = binary.AppendVarint(b, u.day)
		b = binary.AppendVarint(b, u.tokens)
		b = binary.AppendVarint(b, u.requests)
		b = binary.AppendVarint(b, u.limits.TokensPerDay)
		b = binary.AppendVarint(b, u.limits.RequestsPerDay)
	}
	s.budgets.mu.Unlock()
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	s.snapshotSize.Store(int64(len(b)))
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendCounters(b []byte, c *Counters) []byte {
	for _, v := range [...]int64{c.Requests, c.Errors, c.InputTokens, c.OutputTokens, c.CachedTokens,
		c.ReasoningTokens, c.EstimatedRequests, c.Streamed, c.LatencyUS, c.TTFTUS, c.GuardrailBlocks} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// Save writes a snapshot to path atomically.
func (s *Store) Save(path string) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(path, b, 0o600)
}

// Load restores the snapshot at path into s, which should be new. A
// snapshot written more than maxAge ago is ErrStale (maxAge <= 0: no
// limit): only its budget spends of today are restored; one that does
// not parse or fails its checksum is ErrCorrupt; a missing file is an
// error satisfying errors.Is(err, fs.ErrNotExist). On any other error s
// is left unchanged.
func (s *Store) Load(path string, maxAge time.Duration) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return s.UnmarshalBinary(b, maxAge)
}

// UnmarshalBinary is Load of a snapshot already read.
func (s *Store) UnmarshalBinary(b []byte, maxAge time.Duration) error {
	if len(b) < len(snapshotMagic)+4 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return ErrCorrupt
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return ErrCorrupt
	}
	r := reader{b: body[len(snapshotMagic):]}
	if v := r.uvarint(); v != snapshotVersion {
		if r.err != nil {
			return ErrCorrupt
		}
		return fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, snapshotVersion)
	}
	saved := r.varint()
	now := s.now().Unix()
	if saved > now+60 {
		// Saved under a clock ahead of this one: its buckets would own
		// ring slots that newer times can never take back.
		return fmt.Errorf("%w: saved %d s in the future", ErrCorrupt, saved-now)
	}
	// A stale snapshot's statistics are dropped, but today's budget spends
	// are still today's: restoring them keeps a day budget from being
	// spent twice across a long restart.
	stale := maxAge > 0 && s.now().Sub(time.Unix(saved, 0)) > maxAge
	// Parse everything first: a snapshot is restored whole or not at all.
	type restored struct {
		k       Kind
		name    string
		buckets []bucket
		rings   []byte
	}
	var groups []restored
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		var g restored
		g.k = Kind(r.byte())
		g.name = r.string()
		if g.k > numKinds {
			return ErrCorrupt
		}
		m := r.uvarint()
		if m > uint64(len(r.b)) {
			return ErrCorrupt
		}
		for j := uint64(0); j < m && r.err == nil; j++ {
			ring := r.byte()
			bk := bucket{t: r.varint()}
			r.counters(&bk.c)
			if ring > ringDay || bk.t <= 0 || bk.t > now {
				return ErrCorrupt
			}
			g.rings = append(g.rings, ring)
			g.buckets = append(g.buckets, bk)
		}
		groups = append(groups, g)
	}
	type spent struct {
		name string
		u    budgetDay
	}
	var spends []spent
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		sp := spent{name: r.string()}
		sp.u.day, sp.u.tokens, sp.u.requests = r.varint(), r.varint(), r.varint()
		sp.u.limits.TokensPerDay, sp.u.limits.RequestsPerDay = r.varint(), r.varint()
		spends = append(spends, sp)
	}
	if r.err != nil || len(r.b) != 0 {
		return ErrCorrupt
	}
	if stale {
		today := StartOfDay(s.now()).Unix()
		s.budgets.mu.Lock()
		for _, sp := range spends {
			if u := sp.u; u.day == today {
				s.budgets.use[sp.name] = &u
			}
		}
		s.budgets.mu.Unlock()
		return ErrStale
	}
	for _, g := range groups {
		var dst *series
		switch {
		case g.k == numKinds:
			dst = s.global
		case g.k == KindModel:
			if dst = s.aliases[g.name]; dst == nil {
				dst = s.other
			}
		default:
			dst = s.group(g.k, g.name)
		}
		dst.mu.Lock()
		for i, bk := range g.buckets {
			switch g.rings[i] {
			case ringMinute:
				addTo(dst.minute, minute, bk.t, &bk.c)
			case ringHour:
				addTo(dst.hour, hour, bk.t, &bk.c)
			case ringDay:
				addTo(dst.day, day, bk.t, &bk.c)
			}
		}
		dst.mu.Unlock()
	}
	s.budgets.mu.Lock()
	for _, sp := range spends {
		u := sp.u
		s.budgets.use[sp.name] = &u
	}
	s.budgets.mu.Unlock()
	return nil
}

// reader decodes the snapshot; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() { r.err, r.b = ErrCorrupt, nil }

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) counters(c *Counters) {
	for _, p := range [...]*int64{&c.Requests, &c.Errors, &c.InputTokens, &c.OutputTokens, &c.CachedTokens,
		&c.ReasoningTokens, &c.EstimatedRequests, &c.Streamed, &c.LatencyUS, &c.TTFTUS, &c.GuardrailBlocks} {
		*p = r.varint()
	}
}
