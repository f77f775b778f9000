package idgen

import (
	"fmt"
	"testing"
)

// BenchmarkDuplicateTrackerNewIDs presents IDs never seen before to a full
// tracker of a zone's size, as a flood of made-up IDs (or a crawler) does:
// each one pushes another out, in a table far larger than the CPU's caches.
func BenchmarkDuplicateTrackerNewIDs(b *testing.B) {
	const capacity = 200_000
	d, err := NewDuplicateTracker(capacity, window)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = fmt.Sprintf("%026d", i)
	}
	for _, id := range ids[:2*capacity] {
		d.Presented(id, "203.0.113.7", t0)
	}
	b.ReportAllocs()
	i := 2 * capacity
	for b.Loop() {
		d.Presented(ids[i%len(ids)], "203.0.113.7", t0)
		i++
	}
}
