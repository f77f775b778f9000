package idgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// busyRoots is a stand-in for the queue table: the roots whose queues have
// holders or waiters.
type busyRoots struct {
	mu    sync.Mutex
	roots map[string]bool
}

func (b *busyRoots) set(root string, busy bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.roots == nil {
		b.roots = make(map[string]bool)
	}
	b.roots[root] = busy
}

func (b *busyRoots) busy(root string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.roots[root]
}

const grace = 2 * time.Second

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newLineages(t testing.TB, capacity int, busy *busyRoots) *Lineages {
	t.Helper()
	l, err := NewLineages(capacity, busy.busy)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// checkInvariants verifies the table's bookkeeping: every remembered ID is
// a member of its lineage and in exactly one of recent and kept, recent is
// within capacity, lineages within maxLineageMembers, and next pointers go
// to later members of the same lineage.
func checkInvariants(t *testing.T, l *Lineages) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recent.Len() > l.capacity {
		t.Fatalf("recent holds %d IDs, capacity %d", l.recent.Len(), l.capacity)
	}
	seen := make(map[*lineage]bool)
	check := func(id string, m *member) {
		if m.id != id {
			t.Fatalf("entry %q holds member %q", id, m.id)
		}
		lin := m.lineage
		if seen[lin] {
			return
		}
		seen[lin] = true
		if len(lin.members) > maxLineageMembers {
			t.Fatalf("lineage %q has %d members", lin.root, len(lin.members))
		}
		for i, x := range lin.members {
			_, inRecent := l.recent.Peek(x.id)
			_, inKept := l.kept[x.id]
			if inRecent == inKept {
				t.Fatalf("member %q: in recent %v, in kept %v", x.id, inRecent, inKept)
			}
			if x.next == nil {
				continue
			}
			later := false
			for _, y := range lin.members[i+1:] {
				later = later || y == x.next
			}
			if !later {
				t.Fatalf("member %q points to %q, not a later member", x.id, x.next.id)
			}
		}
	}
	for _, id := range l.recent.Keys() {
		m, _ := l.recent.Peek(id)
		check(id, m)
	}
	for id, m := range l.kept {
		check(id, m)
	}
}

func TestResolve(t *testing.T) {
	l := newLineages(t, 100, &busyRoots{})
	if root, pin := l.Resolve("s1"); root != "s1" || pin != (Pin{}) {
		t.Fatalf("unknown ID: Resolve = %q, %v; want itself, no pin", root, pin)
	}
	l.Link("s1", "s2", "c1", at(0))
	l.Link("s2", "s3", "c1", at(time.Second))
	for _, id := range []string{"s1", "s2", "s3"} {
		root, pin := l.Resolve(id)
		if root != "s1" {
			t.Errorf("Resolve(%q) = %q, want s1", id, root)
		}
		if pinned := pin != (Pin{}); pinned != (id != "s1") {
			t.Errorf("Resolve(%q) pinned = %v, want a pin exactly when the root differs", id, pinned)
		}
		pin.Release()
	}
	checkInvariants(t, l)
}

// Bindings of two browsers, as the caller's tokens look.
const (
	victim   = "dmljdGltLWJyb3dzZXItMQ"
	attacker = "YXR0YWNrZXItYnJvd3Nlcg"
)

func TestForward(t *testing.T) {
	l := newLineages(t, 100, &busyRoots{})
	l.Link("s1", "s2", victim, at(0))
	l.Link("s2", "s3", victim, at(time.Second))
	l.Link("x1", "x2", victim, at(0))
	l.Link("x2", "x3", attacker, at(time.Second))
	l.Link("u1", "u2", "", at(0))

	tests := []struct {
		name, id, binding string
		arrived, grace    time.Duration
		want              string
	}{
		{"within grace, to the newest", "s1", victim, time.Second, grace, "s3"},
		{"at the end of grace", "s1", victim, grace, grace, "s3"},
		{"after grace", "s1", victim, grace + time.Nanosecond, grace, ""},
		{"waiting before the regeneration", "s1", victim, -time.Minute, grace, "s3"},
		{"middle of the chain, own grace", "s2", victim, time.Second + grace, grace, "s3"},
		{"grace 0: arriving after the regeneration", "s1", victim, time.Nanosecond, 0, ""},
		{"grace 0: waiting before the regeneration", "s1", victim, -time.Minute, 0, "s3"},
		{"another browser's binding", "s1", attacker, time.Second, grace, ""},
		{"another browser waiting before the regeneration", "s1", attacker, -time.Minute, grace, ""},
		{"no binding", "s1", "", time.Second, grace, ""},
		{"no binding, waiting before the regeneration", "s1", "", -time.Minute, grace, ""},
		{"a prefix of the binding", "s1", victim[:len(victim)-1], time.Second, grace, ""},
		{"the binding and more", "s1", victim + "A", time.Second, grace, ""},
		{"linked without a binding", "u1", "", time.Second, grace, ""},
		{"the newest ID", "s3", victim, time.Second, grace, ""},
		{"unknown ID", "zz", victim, time.Second, grace, ""},
		{"chain stops at another browser's regeneration", "x1", victim, time.Second, grace, "x2"},
		{"the other browser's own link", "x2", attacker, 2 * time.Second, grace, "x3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := l.Forward(tt.id, tt.binding, at(tt.arrived), tt.grace)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Forward(%q) = %q, %v; want %q", tt.id, got, ok, tt.want)
			}
		})
	}
}

func TestSameBinding(t *testing.T) {
	for _, tt := range []struct {
		binding, want string
		same          bool
	}{
		{victim, victim, true},
		{victim, attacker, false},
		{"", "", false},
		{"", victim, false},
		{victim, "", false},
		{victim[:10], victim, false},
		{victim, victim[:10], false},
	} {
		if got := sameBinding(tt.binding, tt.want); got != tt.same {
			t.Errorf("sameBinding(%q, %q) = %v, want %v", tt.binding, tt.want, got, tt.same)
		}
	}
}

func TestLinkFromAnotherBrowser(t *testing.T) {
	l := newLineages(t, 100, &busyRoots{})
	l.Link("s1", "s2", victim, at(0))
	// Someone else holding s1 (a fixation) gets it regenerated too: the
	// new ID shares the queue, but s1 still forwards the victim only.
	if !l.Link("s1", "s4", attacker, at(time.Second)) {
		t.Fatal("Link from another browser refused")
	}
	if root, pin := l.Resolve("s4"); root != "s1" {
		t.Fatalf("Resolve(s4) = %q, want s1", root)
	} else {
		pin.Release()
	}
	if got, ok := l.Forward("s1", victim, at(time.Second), grace); got != "s2" || !ok {
		t.Fatalf("victim forwarded to %q, %v; want s2", got, ok)
	}
	if got, ok := l.Forward("s1", attacker, at(time.Second), grace); ok {
		t.Fatalf("other browser forwarded to %q", got)
	}
	// The victim's browser regenerating s1 again moves its forwarding to
	// the newer ID, the cookie that browser now holds.
	l.Link("s1", "s5", victim, at(time.Second))
	if got, _ := l.Forward("s1", victim, at(time.Second), grace); got != "s5" {
		t.Fatalf("after a second regeneration by the victim: forwarded to %q, want s5", got)
	}
	checkInvariants(t, l)
}

func TestLinkReissuedID(t *testing.T) {
	l := newLineages(t, 100, &busyRoots{})
	l.Link("s1", "s2", "c1", at(0))
	// The backend hands s1 back: s1 is the newest again and nothing loops.
	if !l.Link("s2", "s1", "c1", at(time.Second)) {
		t.Fatal("re-issuing an ID of the same lineage refused")
	}
	if got, ok := l.Forward("s2", "c1", at(time.Second), grace); got != "s1" || !ok {
		t.Fatalf("Forward(s2) = %q, %v; want s1", got, ok)
	}
	if got, ok := l.Forward("s1", "c1", at(time.Second), grace); ok {
		t.Fatalf("Forward(s1), the newest, = %q", got)
	}
	l.Link("s1", "s2", "c1", at(2*time.Second))
	if got, _ := l.Forward("s1", "c1", at(2*time.Second), grace); got != "s2" {
		t.Fatalf("Forward(s1) = %q, want s2", got)
	}
	for _, id := range []string{"s1", "s2"} {
		if root, pin := l.Resolve(id); root != "s1" {
			t.Fatalf("Resolve(%q) = %q, want s1", id, root)
		} else {
			pin.Release()
		}
	}
	checkInvariants(t, l)
}

func TestLinkRefused(t *testing.T) {
	l := newLineages(t, 100, &busyRoots{})
	l.Link("a1", "a2", "c1", at(0))
	l.Link("b1", "b2", "c2", at(0))
	tests := []struct{ name, old, new string }{
		{"same ID", "a2", "a2"},
		{"new ID in another lineage", "a2", "b2"},
		{"new ID is another lineage's root", "a2", "b1"},
		{"unknown old ID, known new ID", "z", "b2"},
	}
	for _, tt := range tests {
		if l.Link(tt.old, tt.new, "c1", at(time.Second)) {
			t.Errorf("%s: Link(%q, %q) = true", tt.name, tt.old, tt.new)
		}
	}
	if root, pin := l.Resolve("b2"); root != "b1" {
		t.Fatalf("a refused link moved b2 to %q", root)
	} else {
		pin.Release()
	}
	if got, _ := l.Forward("a1", "c1", at(time.Second), grace); got != "a2" {
		t.Fatalf("a refused link changed a1's forwarding to %q", got)
	}
	checkInvariants(t, l)
}

func TestUnlink(t *testing.T) {
	busy := &busyRoots{}
	l := newLineages(t, 100, busy)
	l.Link("s1", "s2", "c1", at(0))
	l.Link("s2", "s3", "c1", at(time.Second))

	// A logout while requests are still queued: forwarding ends, the
	// queue key stays.
	busy.set("s1", true)
	l.Unlink("s3")
	for _, id := range []string{"s1", "s2"} {
		if got, ok := l.Forward(id, "c1", at(time.Second), grace); ok {
			t.Fatalf("after logout, Forward(%q) = %q", id, got)
		}
	}
	if root, pin := l.Resolve("s3"); root != "s1" {
		t.Fatalf("after logout of a busy lineage, Resolve(s3) = %q, want s1", root)
	} else {
		pin.Release()
	}

	// A late request with s2 gets a new ID: that links afresh, and the
	// IDs from before the logout stay unforwarded.
	l.Link("s2", "s4", "c1", at(2*time.Second))
	if got, _ := l.Forward("s2", "c1", at(2*time.Second), grace); got != "s4" {
		t.Fatalf("Forward(s2) = %q, want s4", got)
	}
	if got, ok := l.Forward("s1", "c1", at(time.Second), grace); ok {
		t.Fatalf("Forward(s1) = %q across the logout", got)
	}
	checkInvariants(t, l)

	// Once idle, a logout forgets the lineage.
	busy.set("s1", false)
	l.Unlink("s2")
	if root, _ := l.Resolve("s4"); root != "s4" {
		t.Fatalf("after logout of an idle lineage, Resolve(s4) = %q, want s4", root)
	}
	l.Unlink("unknown")
	checkInvariants(t, l)
}

func TestLineagesEvictIdle(t *testing.T) {
	l := newLineages(t, 4, &busyRoots{})
	l.Link("a1", "a2", "c", at(0))
	l.Link("b1", "b2", "c", at(0))
	l.Link("c1", "c2", "c", at(0))
	if root, _ := l.Resolve("a2"); root != "a2" {
		t.Fatalf("Resolve(a2) = %q; the oldest idle link should be forgotten", root)
	}
	if root, pin := l.Resolve("c2"); root != "c1" {
		t.Fatalf("Resolve(c2) = %q, want c1", root)
	} else {
		pin.Release()
	}
	if n := len(l.kept); n != 0 {
		t.Fatalf("kept holds %d idle entries", n)
	}
	checkInvariants(t, l)
}

func TestLineagesKeepBusy(t *testing.T) {
	busy := &busyRoots{}
	l := newLineages(t, 2, busy)
	busy.set("a1", true)
	l.Link("a1", "a2", "c", at(0))
	for i := range 10 {
		l.Link(fmt.Sprint("x", i), fmt.Sprint("y", i), "c", at(0))
		if root, pin := l.Resolve("a2"); root != "a1" {
			t.Fatalf("after %d more links, busy a2 resolves to %q, want a1", i+1, root)
		} else {
			pin.Release()
		}
	}
	if got, ok := l.Forward("a1", "c", at(time.Second), grace); got != "a2" || !ok {
		t.Fatalf("busy a1 forwards to %q, %v; want a2", got, ok)
	}
	checkInvariants(t, l)

	busy.set("a1", false)
	for i := range 10 {
		l.Link(fmt.Sprint("p", i), fmt.Sprint("q", i), "c", at(0))
	}
	if n := len(l.kept); n != 0 {
		t.Fatalf("kept still holds %d entries after the lineage went idle", n)
	}
	if root, _ := l.Resolve("a2"); root != "a2" {
		t.Fatalf("idle a2 still resolves to %q", root)
	}
	checkInvariants(t, l)
}

// TestLinkKeepsItsOwnLineage checks that making room for a new ID never
// pushes out the ID it replaces, even in a full table with an idle queue
// (the turn of the linking request may have been given up after max_hold).
func TestLinkKeepsItsOwnLineage(t *testing.T) {
	l := newLineages(t, 1, &busyRoots{})
	l.Link("a1", "a2", "c", at(0))
	if got, ok := l.Forward("a1", "c", at(time.Second), grace); got != "a2" || !ok {
		t.Fatalf("Forward(a1) = %q, %v; want a2", got, ok)
	}
	checkInvariants(t, l)
}

// TestPinBridgesResolveAndAcquire covers a lineage whose queue is idle
// while a request has resolved its root but not yet queued there.
func TestPinBridgesResolveAndAcquire(t *testing.T) {
	l := newLineages(t, 2, &busyRoots{})
	l.Link("a1", "a2", "c", at(0))
	root, pin := l.Resolve("a2")
	if root != "a1" {
		t.Fatalf("Resolve(a2) = %q, want a1", root)
	}
	l.Link("x1", "x2", "c", at(0))
	l.Link("y1", "y2", "c", at(0))
	if root, second := l.Resolve("a2"); root != "a1" {
		t.Fatalf("pinned a2 resolves to %q, want a1", root)
	} else {
		second.Release()
	}
	pin.Release()
	l.Link("z1", "z2", "c", at(0))
	if root, _ := l.Resolve("a2"); root != "a2" {
		t.Fatalf("released and idle a2 still resolves to %q", root)
	}
	checkInvariants(t, l)
}

func TestLineageMembersBounded(t *testing.T) {
	busy := &busyRoots{}
	busy.set("s0", true)
	l := newLineages(t, 100, busy)
	const n = maxLineageMembers + 5
	for i := range n {
		l.Link(fmt.Sprint("s", i), fmt.Sprint("s", i+1), "c", at(time.Duration(i)*time.Second))
	}
	if root, pin := l.Resolve(fmt.Sprint("s", n)); root != "s0" {
		t.Fatalf("newest ID resolves to %q, want the root s0", root)
	} else {
		pin.Release()
	}
	if root, _ := l.Resolve("s1"); root != "s1" {
		t.Fatalf("oldest IDs should be forgotten; s1 resolves to %q", root)
	}
	// A request that has waited all along with a remembered old ID still
	// goes to the newest.
	if got, _ := l.Forward("s10", "c", at(0), grace); got != fmt.Sprint("s", n) {
		t.Fatalf("Forward(s10) = %q, want s%d", got, n)
	}
	checkInvariants(t, l)
}

// TestForgetPointsPast checks that forgetting an ID in the middle of a
// chain keeps the older ID forwarding to the newest, but only through
// regenerations of one client.
func TestForgetPointsPast(t *testing.T) {
	for _, tt := range []struct {
		name, secondClient, want string
	}{
		{"same client", "c1", "s3"},
		{"another client", "c2", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLineages(t, 5, &busyRoots{})
			l.Link("s1", "s2", "c1", at(0))
			l.Link("s2", "s3", tt.secondClient, at(time.Second))
			// Make s2 the least recently linked, then push it, and it
			// alone, out.
			l.Link("s1", "s4", "c9", at(time.Second))
			l.Link("x1", "x2", "c", at(time.Second))
			if _, ok := l.recent.Peek("s2"); ok {
				t.Fatal("s2 was not the one pushed out")
			}
			got, ok := l.Forward("s1", "c1", at(time.Second), grace)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Forward(s1) = %q, %v; want %q", got, ok, tt.want)
			}
			checkInvariants(t, l)
		})
	}
}

func TestNewLineagesErrors(t *testing.T) {
	busy := (&busyRoots{}).busy
	if _, err := NewLineages(0, busy); err == nil {
		t.Error("capacity 0 accepted")
	}
	if _, err := NewLineages(10, nil); err == nil {
		t.Error("nil busy function accepted")
	}
}

// TestLineagesConcurrent runs every operation from many goroutines; run it
// with -race. It checks the bookkeeping afterwards.
func TestLineagesConcurrent(t *testing.T) {
	busy := &busyRoots{}
	l := newLineages(t, 64, busy)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			client := fmt.Sprint("c", g%3)
			id := func() string { return fmt.Sprint("s", rng.IntN(200)) }
			for range 5000 {
				now := at(time.Duration(rng.IntN(10)) * time.Second)
				switch rng.IntN(10) {
				case 0, 1:
					l.Link(id(), id(), client, now)
				case 2:
					l.Unlink(id())
				case 3:
					busy.set(id(), rng.IntN(2) == 0)
				case 4, 5:
					l.Forward(id(), client, now, grace)
				default:
					_, pin := l.Resolve(id())
					pin.Release()
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, l)
	for _, m := range l.kept {
		if m.lineage.pins.Load() != 0 {
			t.Fatalf("lineage %q still pinned", m.lineage.root)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	l := newLineages(b, 10_000, &busyRoots{})
	for i := range 5000 {
		l.Link(fmt.Sprint("old", i), fmt.Sprint("new", i), "c", t0)
	}
	b.Run("unlinked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, pin := l.Resolve("v9l4b0r2k1mv3qf8tmd6s7j2a5")
			pin.Release()
		}
	})
	b.Run("linked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, pin := l.Resolve("new42")
			pin.Release()
		}
	})
	b.Run("unlinked parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, pin := l.Resolve("v9l4b0r2k1mv3qf8tmd6s7j2a5")
				pin.Release()
			}
		})
	})
	b.Run("linked parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, pin := l.Resolve("new42")
				pin.Release()
			}
		})
	})
}

func BenchmarkForward(b *testing.B) {
	l := newLineages(b, 10_000, &busyRoots{})
	l.Link("s1", "s2", "c", t0)
	l.Link("s2", "s3", "c", t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.Forward("s1", "c", t0, grace); !ok {
			b.Fatal("not forwarded")
		}
	}
}

func BenchmarkLink(b *testing.B) {
	l := newLineages(b, 10_000, &busyRoots{})
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprint("id", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Link(ids[i%len(ids)], ids[(i+1)%len(ids)], "c", t0)
		i += 2
	}
}

// TestForwardGraceIsPerCall: each handler passes its own
// regenerate_grace, and links made before are judged by it.
func TestForwardGraceIsPerCall(t *testing.T) {
	l := newLineages(t, 10, &busyRoots{})
	if !l.Link("old-session-id", "new-session-id", victim, t0) {
		t.Fatal("Link refused")
	}
	late := t0.Add(3 * time.Second)
	if _, ok := l.Forward("old-session-id", victim, late, 2*time.Second); ok {
		t.Fatal("forwarded 3s after the regeneration with a 2s grace")
	}
	if id, ok := l.Forward("old-session-id", victim, late, 5*time.Second); !ok || id != "new-session-id" {
		t.Fatalf("with a 5s grace: Forward = %q, %v", id, ok)
	}
}

// TestLineagesSkipLockWhileEmpty: while no ID was ever linked (or all
// links are forgotten), Resolve and Forward take no lock, so the requests
// of all sessions share none. With the write lock held elsewhere, they
// still answer.
func TestLineagesSkipLockWhileEmpty(t *testing.T) {
	l, err := NewLineages(8, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	answered := make(chan string)
	go func() {
		root, pin := l.Resolve("a")
		pin.Release()
		_, forwarded := l.Forward("a", "b", time.Now(), time.Second)
		answered <- fmt.Sprint(root, " ", forwarded)
	}()
	select {
	case got := <-answered:
		if got != "a false" {
			t.Errorf("Resolve and Forward of an empty table: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Resolve or Forward of an empty table waited for the lock")
	}
	l.mu.Unlock()

	// Once an ID is linked, they must look.
	if !l.Link("a", "b", "binding", time.Now()) {
		t.Fatal("link refused")
	}
	if root, pin := l.Resolve("b"); root != "a" {
		t.Errorf("b resolves to %q after the link, want a", root)
	} else {
		pin.Release()
	}
	l.Unlink("a")
	if l.remembered.Load() != 0 {
		t.Errorf("%d IDs remembered after the idle lineage was unlinked", l.remembered.Load())
	}
}

// TestLinkKeepsNoHeader: the IDs and binding a link remembers are copies,
// not substrings of the headers they were cut from, which would keep a
// request's whole Cookie header (up to a MiB) alive for as long as the link.
func TestLinkKeepsNoHeader(t *testing.T) {
	l, err := NewLineages(8, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	header := "PHPSESSID=old0123456789; sq_binding=token0123456789; padding=" + strings.Repeat("x", 1<<16)
	oldID, binding := header[len("PHPSESSID="):len("PHPSESSID=old0123456789")], header[36:51]
	setCookie := "PHPSESSID=new0123456789; path=/"
	newID := setCookie[10:23]
	if !l.Link(oldID, newID, binding, time.Now()) {
		t.Fatal("link refused")
	}
	inside := func(s, in string) bool {
		p, start := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(in)))
		return p >= start && p < start+uintptr(len(in))
	}
	from, to := l.lookup(oldID), l.lookup(newID)
	if inside(from.id, header) || inside(from.replacedFor, header) || inside(to.id, setCookie) {
		t.Error("the link keeps a substring of the header it was given")
	}
}
