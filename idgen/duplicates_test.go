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
			if !found || !sameDuplicate(got, want) {
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

// TestPresentedKnown: Presented tells an ID a request or a response
// carried before from a new one, and one pushed out from one kept.
func TestPresentedKnown(t *testing.T) {
	d := newTracker(t, trackerShards) // one ID per shard
	if d.Presented("p", "a", at(0)) {
		t.Error("an ID never seen is known")
	}
	if !d.Presented("p", "b", at(time.Second)) {
		t.Error("an ID presented before is not known")
	}
	d.Issued("i", "a", at(0))
	if !d.Presented("i", "a", at(time.Second)) {
		t.Error("an ID issued before is not known")
	}
	for i := range 1000 {
		d.Presented(fmt.Sprint("other", i), "z", at(time.Second))
	}
	if d.Presented("p", "a", at(time.Minute)) {
		t.Error("an ID pushed out is still known")
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
	if total := d.len(); total > trackerShards {
		t.Fatalf("tracker holds %d IDs, capacity %d", total, trackerShards)
	}
}

// sameDuplicate compares the exported fields, the times as instants.
func sameDuplicate(got, want Duplicate) bool {
	return got.Hash == want.Hash && got.FirstClient == want.FirstClient && got.FirstSeen.Equal(want.FirstSeen) &&
		got.FirstIssued == want.FirstIssued && got.SecondClient == want.SecondClient
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

func TestDuplicateTrackerWithheld(t *testing.T) {
	d := newTracker(t, 100)
	d.Presented("x", "a", at(0))
	dup, found := d.Issued("x", "b", at(time.Minute))
	if !found {
		t.Fatal("no duplicate")
	}
	d.Withheld("x", dup)
	got, found := d.Issued("x", "b", at(2*time.Minute))
	want := Duplicate{Hash: Hash("x"), FirstClient: "a", FirstSeen: at(0), SecondClient: "b"}
	if !found || !sameDuplicate(got, want) {
		t.Fatalf("after the withheld response, Issued = %+v, %v; want %+v", got, found, want)
	}
}

// TestDuplicateTrackerLongClientAddresses: an address too long to be kept
// whole (an IPv6 address with a zone) is still told apart from another
// with the same beginning, and logged by its beginning.
func TestDuplicateTrackerLongClientAddresses(t *testing.T) {
	const a = "fe80::1234:5678:9abc:def0:1234:5678%enp0s31f6-vlan100"
	const b = "fe80::1234:5678:9abc:def0:1234:5678%enp0s31f6-vlan200"
	d := newTracker(t, 100)
	d.Presented("x", a, at(0))
	if dup, found := d.Issued("x", a, at(time.Minute)); found {
		t.Fatalf("the same long address counted as another client: %+v", dup)
	}
	dup, found := d.Issued("x", b, at(2*time.Minute))
	if !found {
		t.Fatal("two long addresses with the same beginning counted as one client")
	}
	if want := a[:truncatedClient] + "…"; dup.FirstClient != want || dup.SecondClient != b {
		t.Fatalf("clients %q, %q; want %q, %q", dup.FirstClient, dup.SecondClient, want, b)
	}
}

// TestDuplicateTrackerRemembersAboutCapacity: IDs are pushed out by their
// set's newer IDs, so an ID outlives about capacity newer ones, and not
// only a set's worth. Of 100 IDs followed by capacity/2 newer ones, about
// one is pushed out (at least 10 only about once in 10^9 runs).
func TestDuplicateTrackerRemembersAboutCapacity(t *testing.T) {
	const capacity = trackerShards * setWays * 8
	d := newTracker(t, capacity)
	for i := range 100 {
		d.Presented(fmt.Sprint("watched", i), "a", at(0))
	}
	for i := range capacity / 2 {
		d.Presented(fmt.Sprint("newer", i), "z", at(time.Second))
	}
	remembered := 0
	for i := range 100 {
		if _, found := d.Issued(fmt.Sprint("watched", i), "b", at(time.Minute)); found {
			remembered++
		}
	}
	t.Logf("%d of 100 IDs remembered after %d newer ones; %d IDs held", remembered, capacity/2, d.len())
	if remembered < 90 {
		t.Errorf("%d of 100 IDs remembered after capacity/2 newer ones, want about all", remembered)
	}
	for i := range 4 * capacity {
		d.Presented(fmt.Sprint("flood", i), "z", at(time.Hour))
	}
	if n := d.len(); n > capacity {
		t.Errorf("%d IDs held, capacity %d", n, capacity)
	}
}

// TestDuplicateTrackerNoAllocationPerID: a new ID costs no allocation once
// the tracker has grown to its size, so that a flood of new IDs (or a
// crawler's) adds nothing for the garbage collector to do.
func TestDuplicateTrackerNoAllocationPerID(t *testing.T) {
	const capacity = 10_000
	d := newTracker(t, capacity)
	ids := make([]string, 3*capacity)
	for i := range ids {
		ids[i] = fmt.Sprintf("%026d", i)
	}
	for _, id := range ids[:capacity] {
		d.Presented(id, "203.0.113.7", t0)
	}
	next := capacity
	allocs := testing.AllocsPerRun(capacity, func() {
		d.Presented(ids[next], "203.0.113.7", t0)
		next++
	})
	if allocs > 0 {
		t.Errorf("%.2f allocations per new ID, want 0", allocs)
	}
}
