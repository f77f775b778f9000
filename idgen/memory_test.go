package idgen

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerTrackedIDAndLink measures the bytes the duplicate
// tracker keeps per ID it remembers and the lineage table per regeneration
// link (two IDs, the binding, the lineage), with 26-character IDs as PHP
// makes them, once both are full. Run with -benchtime 1x.
func BenchmarkMemoryPerTrackedIDAndLink(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		ids := make([]string, 2*n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%026d", i)
		}
		client := "203.0.113.7"
		now := time.Now()

		before := heapBytes()
		tracker, err := NewDuplicateTracker(n, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range ids { // twice its capacity: it stays full
			tracker.Presented(id, client, now)
		}
		b.ReportMetric(float64(heapBytes()-before)/n, "B/tracked-ID")

		before = heapBytes()
		lineages, err := NewLineages(n, func(string) bool { return false })
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(ids); i += 2 {
			lineages.Link(ids[i], ids[i+1], "binding-token-0123456789abcdef", now)
		}
		// n IDs remembered: n/2 links of two IDs each.
		b.ReportMetric(float64(heapBytes()-before)/(n/2), "B/link")
		runtime.KeepAlive(tracker)
		runtime.KeepAlive(lineages)
	}
}
