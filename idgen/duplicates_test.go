package idgen

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const window = 24 * time.Hour

func newTracker(t testing.TB, capacity int) *DuplicateTracker {
	t.Helper()
	d, err := NewDuplicateTracker(capacity, window)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDuplicateTracker(t *testing.T) {
	type event struct {
		issued bool
		client string
		at     time.Duration
	}
	tests := []struct {
		name   string
		before []event
		client string // the one the ID is then issued to
		at     time.Duration
		want   *Duplicate
	}{
		{"never seen", nil, "b", 0, nil},
		{"issued to another client", []event{{true, "a", 0}}, "b", time.Hour,
			&Duplicate{FirstClient: "a", FirstSeen: at(0), FirstIssued: true, SecondClient: "b"}},
		{"presented by another client", []event{{false, "a", time.Minute}}, "b", time.Hour,
			&Duplicate{FirstClient: "a", FirstSeen: at(time.Minute), SecondClient: "b"}},
		{"issued to the same client again", []event{{true, "a", 0}}, "a", time.Hour, nil},
		{"presented by the same client", []event{{false, "a", 0}}, "a", time.Hour, nil},
		{"at the end of the window", []event{{true, "a", 0}}, "b", window,
			&Duplicate{FirstClient: "a", FirstSeen: at(0), FirstIssued: true, SecondClient: "b"}},
		{"after the window", []event{{true, "a", 0}}, "b", window + time.Nanosecond, nil},
		{"the last client counts", []event{{true, "a", 0}, {false, "b", time.Minute}}, "b", time.Hour, nil},
		{"seen again within the window", []event{{false, "a", 0}, {false, "a", 20 * time.Hour}}, "b", 30 * time.Hour,
			&Duplicate{FirstClient: "a", FirstSeen: at(20 * time.Hour), SecondClient: "b"}},
	}
	const id = "v9l4b0r2k1mv3qf8tmd6s7j2a5"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTracker(t, 100)
			for _, e := range tt.before {
				if e.issued {
					d.Issued(id, e.client, at(e.at))
				} else {
					d.Presented(id, e.client, at(e.at))
				}
			}
			d.Presented("other-session", "z", at(tt.at))
			got, found := d.Issued(id, tt.client, at(tt.at))
			if tt.want == nil {
				if found {
					t.Fatalf("Issued = %+v, want no duplicate", got)
				}
				return
			}
			want := *tt.want
			want.Hash = Hash(id)
			if !found || got != want {
				t.Fatalf("Issued = %+v, %v; want %+v", got, found, want)
			}
		})
	}
}

func TestDuplicateTrackerThirdClient(t *testing.T) {
	d := newTracker(t, 100)
	d.Issued("x", "a", at(0))
	d.Issued("x", "b", at(time.Minute))
	got, found := d.Issued("x", "c", at(2*time.Minute))
	if !found || got.FirstClient != "b" || got.SecondClient != "c" {
		t.Fatalf("third client: Issued = %+v, %v; want b then c", got, found)
	}
}

func TestDuplicateTrackerBounded(t *testing.T) {
	d := newTracker(t, trackerShards) // one ID per shard
	d.Issued("x", "a", at(0))
	for i := range 1000 {
		d.Presented(fmt.Sprint("other", i), "z", at(time.Second))
	}
	if got, found := d.Issued("x", "b", at(time.Minute)); found {
		t.Fatalf("pushed-out ID still compared: %+v", got)
	}
	total := 0
	for i := range d.shards {
		total += d.shards[i].seen.Len()
	}
	if total > trackerShards {
		t.Fatalf("tracker holds %d IDs, capacity %d", total, trackerShards)
	}
}

func TestNewDuplicateTrackerErrors(t *testing.T) {
	if _, err := NewDuplicateTracker(0, window); err == nil {
		t.Error("capacity 0 accepted")
	}
	if _, err := NewDuplicateTracker(10, 0); err == nil {
		t.Error("zero window accepted")
	}
}

// TestDuplicateTrackerConcurrent is for -race: every client presents its
// own IDs and is issued them again, so no duplicate may be found, except
// for the one ID every client is issued.
func TestDuplicateTrackerConcurrent(t *testing.T) {
	d := newTracker(t, 10_000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	shared := 0
	for g := range 8 {
		wg.Go(func() {
			client := fmt.Sprint("c", g)
			for i := range 2000 {
				id := fmt.Sprint(client, "-", i%300)
				d.Presented(id, client, at(time.Duration(i)))
				if dup, found := d.Issued(id, client, at(time.Duration(i))); found {
					t.Errorf("own ID reported: %+v", dup)
				}
			}
			if _, found := d.Issued("shared", client, at(time.Hour)); found {
				mu.Lock()
				shared++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if shared != 7 {
		t.Fatalf("shared ID reported %d times, want 7 (all clients but the first)", shared)
	}
}

func BenchmarkDuplicateTracker(b *testing.B) {
	d := newTracker(b, 100_000)
	ids := make([]string, 50_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%026d", i)
		d.Presented(ids[i], "203.0.113.7", t0)
	}
	b.Run("Presented", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d.Presented(ids[i%len(ids)], "203.0.113.7", t0)
			i++
		}
	})
	b.Run("Presented parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919)) // goroutines start on different IDs
			for pb.Next() {
				d.Presented(ids[i%len(ids)], "203.0.113.7", t0)
				i++
			}
		})
	})
	b.Run("Issued", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d.Issued(ids[i%len(ids)], "203.0.113.7", t0)
			i++
		}
	})
}

func TestSetWindow(t *testing.T) {
	d, err := NewDuplicateTracker(100, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_000_000, 0)
	d.Presented("shared-session-id", "10.0.0.1", t0)
	d.SetWindow(time.Minute)
	if _, found := d.Issued("shared-session-id", "10.0.0.2", t0.Add(2*time.Minute)); found {
		t.Fatal("a sighting older than the new window still counts")
	}
	d.SetWindow(time.Hour)
	if _, found := d.Issued("shared-session-id", "10.0.0.3", t0.Add(3*time.Minute)); !found {
		t.Fatal("a sighting within the window does not count")
	}
}
