package idgen

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkResolveForwardParallel is what every queued request with a
// session cookie asks the lineage table, Resolve then Forward, from every
// CPU at once, for sessions of their own, in a table that holds links (a
// backend that regenerates IDs at login): the lock shared by all sessions,
// if any, shows as time growing with -cpu.
func BenchmarkResolveForwardParallel(b *testing.B) {
	l, err := NewLineages(10_000, func(string) bool { return false })
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		l.Link(fmt.Sprintf("old-%d", i), fmt.Sprintf("new-%d", i), "binding", time.Now())
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("session-%d", next.Add(1))
		now := time.Now()
		for pb.Next() {
			_, pin := l.Resolve(id)
			pin.Release()
			l.Forward(id, "binding", now, time.Second)
		}
	})
}
