package guard

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey is a hash of what a guard model saw: the stage, where the
// answer starts and every text with its role and kind. Texts are hashed,
// never kept.
type cacheKey [sha256.Size]byte

func contentKey(c *Content) cacheKey {
	h := sha256.New()
	var n [8]byte
	field := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	answer := c.Answer
	if c.Stage == Input {
		answer = 0
	}
	binary.LittleEndian.PutUint64(n[:], uint64(c.Stage)<<56|uint64(uint32(answer)))
	h.Write(n[:])
	for _, t := range c.Texts {
		field(t.Role)
		field(string(t.Kind))
		field(t.Text)
	}
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// verdictCache is an LRU of recent verdicts, each good for ttl (0: until
// evicted).
type verdictCache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	now   Clock
	order *list.List // of *cacheEntry, most recent first
	byKey map[cacheKey]*list.Element
}

type cacheEntry struct {
	key cacheKey
	v   Verdict
	at  time.Time
}

func newVerdictCache(size int, ttl time.Duration, now Clock) *verdictCache {
	return &verdictCache{size: size, ttl: ttl, now: now, order: list.New(), byKey: map[cacheKey]*list.Element{}}
}

func (c *verdictCache) get(k cacheKey) (Verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return Verdict{}, false
	}
	e := el.Value.(*cacheEntry)
	if c.ttl > 0 && c.now().Sub(e.at) >= c.ttl {
		c.order.Remove(el)
		delete(c.byKey, k)
		return Verdict{}, false
	}
	c.order.MoveToFront(el)
	return e.v, true
}

func (c *verdictCache) put(k cacheKey, v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		el.Value = &cacheEntry{key: k, v: v, at: c.now()}
		c.order.MoveToFront(el)
		return
	}
	c.byKey[k] = c.order.PushFront(&cacheEntry{key: k, v: v, at: c.now()})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
}
