package usage

import (
	"time"
)

// Point is one bucket of a time series: its start and sums.
type Point struct {
	T time.Time
	Counters
}

// Widths a series can be read at.
const (
	Minute = time.Minute
	Hour   = time.Hour
	Day    = 24 * time.Hour
)

// DefaultWidth is the bucket width for a span when the caller names none:
// minutes up to two hours, hours up to a week, days beyond.
func DefaultWidth(span time.Duration) time.Duration {
	switch {
	case span <= 2*time.Hour:
		return Minute
	case span <= 7*24*time.Hour:
		return Hour
	}
	return Day
}

// Series is group's points of width (Minute, Hour or Day) from from to to,
// one per bucket, zeros included, clipped to what the rings hold. ok is
// false when the group has no data at all.
func (s *Store) Series(k Kind, group string, from, to time.Time, width time.Duration) (_ []Point, ok bool) {
	g := s.lookup(k, group)
	if g == nil {
		return nil, false
	}
	return s.points(g, from, to, width), true
}

// Totals is the global series' points (all requests).
func (s *Store) Totals(from, to time.Time, width time.Duration) []Point {
	return s.points(s.global, from, to, width)
}

func (s *Store) lookup(k Kind, group string) *series {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.groups[k][group]
}

// oldest is the start of the oldest bucket a ring of width w can hold at now.
func (s *Store) oldest(now int64, w int64) int64 {
	n := int64(0)
	switch w {
	case minute:
		n = minuteBuckets
	case hour:
		n = int64(s.hours)
	case day:
		n = int64(s.days)
		if n == 0 {
			// Days made of the hourly ring: the oldest may be partial.
			n = (int64(s.hours)+23)/24 + 1
		}
	}
	cur := now - now%w
	return cur - (n-1)*w
}

func (s *Store) points(g *series, from, to time.Time, width time.Duration) []Point {
	w := int64(width / time.Second)
	if w != minute && w != hour && w != day {
		w = hour
	}
	now := s.now().Unix()
	lo, hi := from.Unix(), to.Unix()
	lo -= lo % w
	lo = max(lo, s.oldest(now, w))
	hi = min(hi, now)
	if hi < lo {
		return []Point{}
	}
	n := (hi-lo)/w + 1
	out := make([]Point, n)
	for i := range out {
		out[i].T = time.Unix(lo+int64(i)*w, 0).UTC()
	}
	at := func(t int64, c *Counters) {
		if t >= lo && t <= hi {
			out[(t-lo)/w].Counters.Add(c)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case w == minute:
		for i := range g.minute {
			if b := &g.minute[i]; b.t != 0 {
				at(b.t, &b.c)
			}
		}
	case w == hour:
		for i := range g.hour {
			if b := &g.hour[i]; b.t != 0 {
				at(b.t, &b.c)
			}
		}
	case len(g.day) > 0:
		for i := range g.day {
			if b := &g.day[i]; b.t != 0 {
				at(b.t, &b.c)
			}
		}
	default:
		for i := range g.hour {
			if b := &g.hour[i]; b.t != 0 {
				at(b.t-b.t%day, &b.c)
			}
		}
	}
	return out
}

// Sum is group's sums from from to now: the hourly buckets that start at
// or after from (the current hour included), and when from is older than
// the hourly ring, whole days then hours (see sum).
func (s *Store) Sum(k Kind, group string, from time.Time) (Counters, bool) {
	g := s.lookup(k, group)
	if g == nil {
		return Counters{}, false
	}
	return s.sum(g, from), true
}

// Total is every request's sums from from to now.
func (s *Store) Total(from time.Time) Counters { return s.sum(s.global, from) }

func (s *Store) sum(g *series, from time.Time) Counters {
	lo := from.Unix()
	lo -= lo % hour
	hourStart := s.oldest(s.now().Unix(), hour)
	var c Counters
	g.mu.Lock()
	defer g.mu.Unlock()
	// Every request is in an hourly and a daily bucket. Within the hourly
	// ring's reach the hours answer; further back, whole days up to the
	// midnight after the ring's oldest hour (that day's early hours are
	// gone from the ring), then the hours from that midnight on. A slot
	// older than the ring's reach (not yet reused) is never read.
	hoursFrom := max(lo, hourStart)
	if lo < hourStart && len(g.day) > 0 {
		d0 := (hourStart + day - 1) / day * day
		for i := range g.day {
			if b := &g.day[i]; b.t != 0 && b.t >= lo-lo%day && b.t < d0 {
				c.Add(&b.c)
			}
		}
		hoursFrom = d0
	}
	for i := range g.hour {
		if b := &g.hour[i]; b.t != 0 && b.t >= hoursFrom {
			c.Add(&b.c)
		}
	}
	return c
}

// Since is the start of the oldest bucket with data in the global series
// (zero when there is none).
func (s *Store) Since() time.Time {
	g := s.global
	g.mu.Lock()
	defer g.mu.Unlock()
	var oldest int64
	for _, ring := range [][]bucket{g.minute, g.hour, g.day} {
		for i := range ring {
			if t := ring[i].t; t != 0 && (oldest == 0 || t < oldest) {
				oldest = t
			}
		}
	}
	if oldest == 0 {
		return time.Time{}
	}
	return time.Unix(oldest, 0).UTC()
}

// StartOfDay is the UTC midnight of t: budget windows are UTC days.
func StartOfDay(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}
