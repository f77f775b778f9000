package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkUncontended is the price every queued request pays when its
// session is idle: one Acquire and one Release.
func BenchmarkUncontended(b *testing.B) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 32})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		turn, _, err := tbl.Acquire(ctx, "session", Write, 0)
		if err != nil {
			b.Fatal(err)
		}
		turn.Release()
	}
}

// BenchmarkUncontendedParallel runs idle sessions on every CPU at once, to
// show that unrelated keys do not contend.
func BenchmarkUncontendedParallel(b *testing.B) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 32})
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprintf("session-%d", next.Add(1))
		ctx := context.Background()
		for pb.Next() {
			turn, _, err := tbl.Acquire(ctx, key, Write, 0)
			if err != nil {
				b.Error(err)
				return
			}
			turn.Release()
		}
	})
}

// BenchmarkHandoff measures the latency from a holder's Release to the
// parked waiter behind it running again, reported as ns/handoff.
func BenchmarkHandoff(b *testing.B) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 2})
	ctx := context.Background()
	var total time.Duration
	for b.Loop() {
		holder, _, _ := tbl.Acquire(ctx, "session", Write, 0)
		probe := newProbe(ctx)
		running := make(chan time.Time, 1)
		go func() {
			turn, _, _ := tbl.Acquire(probe, "session", Write, 0)
			running <- time.Now()
			turn.Release()
		}()
		<-probe.entered
		start := time.Now()
		holder.Release()
		total += (<-running).Sub(start)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/handoff")
}
