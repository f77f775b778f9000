package caddymodule

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionqueue/caddy-session-queue/idgen"
	"github.com/sessionqueue/caddy-session-queue/queue"
)

func testZone(t *testing.T, name, keyPattern string) *zone {
	t.Helper()
	var pattern idgen.KeyPattern
	if keyPattern != "" {
		var err error
		if pattern, err = idgen.CompileKeyPattern(keyPattern); err != nil {
			t.Fatal(err)
		}
	}
	z, err := acquireZone(name, zoneSettings{
		limits: queue.Limits{MaxReaders: 4, MaxWaiting: 100}, keyPattern: pattern,
		trackWindow: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseZone(name) })
	return z
}

func setKeyPattern(t *testing.T, z *zone, expr string) {
	t.Helper()
	pattern, err := idgen.CompileKeyPattern(expr)
	if err != nil {
		t.Fatal(err)
	}
	z.keying.setPattern(pattern)
}

// A writer holding its turn under the old key_pattern keeps a request of
// the same session, keyed by the new pattern, waiting.
func TestKeyPatternChangeKeepsWritersApart(t *testing.T) {
	z := testZone(t, "keying-change", "")
	holder, key, _, err := z.acquire(t.Context(), &z.stripes[0], "node1-5-abc", queue.Write, time.Now(), 0, nil)
	if err != nil || key != "node1-5-abc" {
		t.Fatalf("holder: key %q, %v", key, err)
	}
	setKeyPattern(t, z, `^[^-]*-[^-]*-(.+)$`)
	if !z.busy("node1-5-abc") {
		t.Fatal("the session is not busy under the new pattern while its holder runs")
	}

	granted := make(chan sessionTurn)
	go func() {
		turn, key, _, err := z.acquire(context.Background(), &z.stripes[0], "node1-5-abc", queue.Write, time.Now(), 0, nil)
		if err != nil || key != "abc" {
			t.Errorf("second writer: key %q, %v", key, err)
		}
		granted <- turn
	}()
	for _, waiting := z.table.Stats(); waiting != 1; _, waiting = z.table.Stats() {
		select {
		case <-granted:
			t.Fatal("a second writer of the session was let in across the key_pattern change")
		case <-time.After(time.Millisecond):
		}
	}
	holder.Release()
	second := <-granted
	if n := len(z.keying.epochs.Load().older); n != 0 {
		t.Fatalf("%d older epochs kept once their last request left, want 0", n)
	}
	second.Release()
	if keys, _ := z.table.Stats(); keys != 0 {
		t.Fatalf("%d keys busy after every turn was released", keys)
	}
}

// A reload back to an earlier key_pattern keys a session as it did two
// epochs ago; taking the keys by epoch would then deadlock: B (epoch 2)
// would hold its own key and wait for A's, and C (epoch 3) would hold A's
// key, its own again, and wait for B's.
func TestKeyPatternBroughtBackDoesNotDeadlock(t *testing.T) {
	const id = "s0-node0"
	z := testZone(t, "keying-back", `^([^-]+)-`)
	a, _, _, err := z.acquire(t.Context(), &z.stripes[0], id, queue.Write, time.Now(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	setKeyPattern(t, z, `-([^-]+)$`)
	granted := make(chan sessionTurn, 2)
	enter := func(name string) {
		go func() {
			turn, _, _, err := z.acquire(context.Background(), &z.stripes[0], id, queue.Write, time.Now(), 0, nil)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			granted <- turn
		}()
	}
	enter("B")
	awaitTableWaiting(t, z, 1)
	setKeyPattern(t, z, `^([^-]+)-`)
	enter("C")
	awaitTableWaiting(t, z, 2)
	a.Release()
	for range 2 {
		select {
		case turn := <-granted:
			turn.Release()
		case <-time.After(30 * time.Second):
			t.Fatal("requests of one session deadlocked across key_pattern changes")
		}
	}
}

// awaitTableWaiting blocks until n requests wait in z's table.
func awaitTableWaiting(t *testing.T, z *zone, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, waiting := z.table.Stats(); waiting != n; _, waiting = z.table.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting, want %d", waiting, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// An unchanged pattern keeps its epoch, so a reload that does not touch
// key_pattern costs requests nothing.
func TestUnchangedKeyPatternKeepsEpoch(t *testing.T) {
	z := testZone(t, "keying-same", "^(.+)$")
	before := z.keying.epochs.Load()
	setKeyPattern(t, z, "^(.+)$")
	if z.keying.epochs.Load() != before {
		t.Fatal("setting the same key_pattern started a new epoch")
	}
}

func TestOneEpochAcquireAllocatesNothing(t *testing.T) {
	z := testZone(t, "keying-allocs", "")
	allocs := testing.AllocsPerRun(100, func() {
		turn, _, _, err := z.acquire(context.Background(), &z.stripes[0], "some-session", queue.Write, time.Now(), time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		turn.Release()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per acquire and release, want 0", allocs)
	}
}

// TestKeyPatternChangesUnderLoad changes key_pattern without pause while
// writers of a few sessions come and go: no two writers of one session ever
// run together, nobody deadlocks, and no epoch outlives its requests.
func TestKeyPatternChangesUnderLoad(t *testing.T) {
	z := testZone(t, "keying-stress", "")
	// Three patterns keying the same IDs three ways; the last keys alike
	// the whole ID, as "" does, so equal keys are taken once.
	patterns := []string{`^([^-]+)-`, `-([^-]+)$`, `^(.+)$`}
	const sessions, writers, rounds = 4, 4, 200
	var inside [sessions]atomic.Int32
	var severalKeys atomic.Int64
	stop := make(chan struct{})
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			setKeyPattern(t, z, patterns[i%len(patterns)])
		}
	}()
	var wg sync.WaitGroup
	for s := range sessions {
		id := fmt.Sprintf("s%d-node%d", s, s)
		for range writers {
			wg.Go(func() {
				for range rounds {
					turn, _, _, err := z.acquire(context.Background(), &z.stripes[rand.IntN(stripeCount)], id, queue.Write, time.Now(), 0, nil)
					if err != nil {
						t.Error(err)
						return
					}
					if len(turn.more) > 0 {
						severalKeys.Add(1)
					}
					if n := inside[s].Add(1); n != 1 {
						t.Errorf("session %d: %d writers inside at once", s, n)
					}
					if !z.busy(id) {
						t.Errorf("session %d not busy while a writer holds it", s)
					}
					inside[s].Add(-1)
					turn.Release()
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	<-reloads
	t.Logf("%d of %d turns were taken on several keys", severalKeys.Load(), sessions*writers*rounds)
	z.keying.prune()
	if n := len(z.keying.epochs.Load().older); n != 0 {
		t.Fatalf("%d older epochs kept after every request left, want 0", n)
	}
	if keys, waiting := z.table.Stats(); keys != 0 || waiting != 0 {
		t.Fatalf("%d keys busy, %d waiting after every turn was released", keys, waiting)
	}
}
