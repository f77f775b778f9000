package queue

import (
	"cmp"
	"slices"
	"time"
)

// KeyStats describes one busy key.
type KeyStats struct {
	Key     string
	Readers int
	Writer  bool
	Waiting int
	// OldestWaitSince is when the longest-waiting request arrived; zero
	// when nobody waits.
	OldestWaitSince time.Time
}

// Busy reports whether requests hold or wait on key.
func (t *Table) Busy(key string) bool {
	s := t.shardFor(key)
	s.mu.Lock()
	_, busy := s.keys[key]
	s.mu.Unlock()
	return busy
}

// Stats counts the busy keys and the requests waiting on them. It visits
// every shard, one at a time, so it is a consistent view of each shard but
// not of the whole table; meant for monitoring, not for decisions.
func (t *Table) Stats() (keys, waiting int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		keys += len(s.keys)
		for _, e := range s.keys {
			waiting += e.waiting
		}
		s.mu.Unlock()
	}
	return keys, waiting
}

// Busiest returns up to n busy keys, those with the most waiting requests
// first, then those waiting longest.
func (t *Table) Busiest(n int) []KeyStats {
	var all []KeyStats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.keys {
			st := KeyStats{Key: e.key, Readers: e.readers, Writer: e.writer, Waiting: e.waiting}
			if e.head != nil {
				st.OldestWaitSince = e.head.since
			}
			all = append(all, st)
		}
		s.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b KeyStats) int {
		if c := cmp.Compare(b.Waiting, a.Waiting); c != 0 {
			return c
		}
		return a.OldestWaitSince.Compare(b.OldestWaitSince)
	})
	return all[:min(n, len(all))]
}
