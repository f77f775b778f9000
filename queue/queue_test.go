package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// enqueueProbe is a context that reports when Acquire starts waiting on it:
// Acquire calls Done only after the waiter is in the queue, so a closed
// entered channel means the caller's place in line is fixed.
type enqueueProbe struct {
	context.Context
	once    sync.Once
	entered chan struct{}
}

func newProbe(parent context.Context) *enqueueProbe {
	return &enqueueProbe{Context: parent, entered: make(chan struct{})}
}

func (p *enqueueProbe) Done() <-chan struct{} {
	p.once.Do(func() { close(p.entered) })
	return p.Context.Done()
}

type acquired struct {
	turn Turn
	res  Result
	err  error
}

// startAcquire calls Acquire in a goroutine and returns once the caller
// holds a turn, was refused, or is queued; the result arrives on the channel.
func startAcquire(t *testing.T, tbl *Table, ctx context.Context, key string, mode Mode) <-chan acquired {
	t.Helper()
	probe := newProbe(ctx)
	done := make(chan acquired, 1)
	go func() {
		turn, res, err := tbl.Acquire(probe, key, mode, 0)
		done <- acquired{turn, res, err}
	}()
	select {
	case <-probe.entered:
	case a := <-done:
		// Answered without waiting: put it back for the caller.
		replay := make(chan acquired, 1)
		replay <- a
		return replay
	}
	return done
}

func mustGrant(t *testing.T, ch <-chan acquired) Turn {
	t.Helper()
	a := <-ch
	if a.err != nil {
		t.Fatalf("acquire: %v", a.err)
	}
	return a.turn
}

func pending(ch <-chan acquired) bool {
	select {
	case a := <-ch:
		panic(fmt.Sprintf("unexpectedly answered: %+v", a))
	default:
		return true
	}
}

func isEmpty(tbl *Table) bool {
	for i := range tbl.shards {
		s := &tbl.shards[i]
		s.mu.Lock()
		n := len(s.keys)
		s.mu.Unlock()
		if n != 0 {
			return false
		}
	}
	return true
}

func TestWriterIsExclusive(t *testing.T) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 8})
	ctx := context.Background()
	w1 := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	w2 := startAcquire(t, tbl, ctx, "s", Write)
	r := startAcquire(t, tbl, ctx, "s", Read)
	pending(w2)
	pending(r)

	other := mustGrant(t, startAcquire(t, tbl, ctx, "other", Write))
	other.Release()

	w1.Release()
	second := mustGrant(t, w2)
	pending(r)
	second.Release()
	mustGrant(t, r).Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty after every turn was released")
	}
}

func TestReadersShareUpToMax(t *testing.T) {
	tbl := New(Limits{MaxReaders: 3, MaxWaiting: 8})
	ctx := context.Background()
	var turns []Turn
	for range 3 {
		turns = append(turns, mustGrant(t, startAcquire(t, tbl, ctx, "s", Read)))
	}
	fourth := startAcquire(t, tbl, ctx, "s", Read)
	pending(fourth)
	turns[0].Release()
	turns = append(turns[1:], mustGrant(t, fourth))
	for _, turn := range turns {
		turn.Release()
	}
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestReaderBehindWaitingWriterWaits(t *testing.T) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 8})
	ctx := context.Background()
	r1 := mustGrant(t, startAcquire(t, tbl, ctx, "s", Read))
	w := startAcquire(t, tbl, ctx, "s", Write)
	r2 := startAcquire(t, tbl, ctx, "s", Read)
	r3 := startAcquire(t, tbl, ctx, "s", Read)
	pending(w)
	pending(r2) // a free reader slot is not enough: the writer came first
	r1.Release()
	wt := mustGrant(t, w)
	pending(r2)
	wt.Release()
	// Both readers at the head are admitted together.
	mustGrant(t, r2).Release()
	mustGrant(t, r3).Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestGrantsInArrivalOrder(t *testing.T) {
	tbl := New(Limits{MaxReaders: 2, MaxWaiting: 64})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	modes := []Mode{Write, Read, Read, Read, Write, Read, Write, Write, Read}
	var waiting []<-chan acquired
	for _, m := range modes {
		waiting = append(waiting, startAcquire(t, tbl, ctx, "s", m))
	}
	holder.Release()
	// With MaxReaders 2 the batches are: W | R R | R | W | R | W | W | R.
	batches := [][]int{{0}, {1, 2}, {3}, {4}, {5}, {6}, {7}, {8}}
	for _, batch := range batches {
		var turns []Turn
		for _, i := range batch {
			turns = append(turns, mustGrant(t, waiting[i]))
		}
		for _, later := range waiting[batch[len(batch)-1]+1:] {
			pending(later)
		}
		for _, turn := range turns {
			turn.Release()
		}
	}
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestQueueFull(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 2})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	a := startAcquire(t, tbl, ctx, "s", Write)
	b := startAcquire(t, tbl, ctx, "s", Read)
	_, res, err := tbl.Acquire(ctx, "s", Read, 0)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: got %v, want ErrQueueFull", err)
	}
	if res.Ahead != 3 {
		t.Fatalf("Ahead = %d, want 3 (one holder, two waiting)", res.Ahead)
	}
	holder.Release()
	mustGrant(t, a).Release()
	mustGrant(t, b).Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestCanceledWaiterLeavesQueue(t *testing.T) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 1})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Read))
	cctx, cancel := context.WithCancel(ctx)
	w := startAcquire(t, tbl, cctx, "s", Write)
	cancel()
	if a := <-w; !errors.Is(a.err, context.Canceled) {
		t.Fatalf("canceled waiter: got %v", a.err)
	}
	// The place it held is free again (MaxWaiting is 1), and the reader
	// that was stuck behind the writer is admitted beside the holder.
	r := mustGrant(t, startAcquire(t, tbl, ctx, "s", Read))
	holder.Release()
	r.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestCancelLetsReadersBehindIn(t *testing.T) {
	tbl := New(Limits{MaxReaders: 4, MaxWaiting: 8})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Read))
	cctx, cancel := context.WithCancel(ctx)
	w := startAcquire(t, tbl, cctx, "s", Write)
	r := startAcquire(t, tbl, ctx, "s", Read)
	pending(r)
	cancel()
	<-w
	mustGrant(t, r).Release()
	holder.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

// TestCancelRacesGrant releases a holder while the waiter's context ends, many
// times over: whichever wins, the turn is neither lost nor doubled.
func TestCancelRacesGrant(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 4})
	ctx := context.Background()
	for i := range 5000 {
		holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
		cctx, cancel := context.WithCancel(ctx)
		w := startAcquire(t, tbl, cctx, "s", Write)
		next := startAcquire(t, tbl, ctx, "s", Write)
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; holder.Release() }()
		go func() { defer wg.Done(); <-start; cancel() }()
		close(start)
		wg.Wait()
		if a := <-w; a.err == nil {
			a.turn.Release()
		}
		mustGrant(t, next).Release()
		if !isEmpty(tbl) {
			t.Fatalf("iteration %d: table not empty", i)
		}
	}
}

func TestSetLimitsAdmitsWaitingReaders(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 8})
	ctx := context.Background()
	r1 := mustGrant(t, startAcquire(t, tbl, ctx, "s", Read))
	r2 := startAcquire(t, tbl, ctx, "s", Read)
	pending(r2)
	tbl.SetLimits(Limits{MaxReaders: 2, MaxWaiting: 8})
	mustGrant(t, r2).Release()
	r1.Release()
	tbl.SetLimits(Limits{MaxReaders: 2, MaxWaiting: 0})
	w := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	if _, _, err := tbl.Acquire(ctx, "s", Write, 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("lowered MaxWaiting: got %v, want ErrQueueFull", err)
	}
	w.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

// checker is the stress test's model of one key: who holds it, and the order
// in which requests joined its queue.
type checker struct {
	t          *testing.T
	maxReaders int

	mu       sync.Mutex
	failures int
	writers  int
	readers  int
	modes    []Mode
	granted  []bool
	leaving  []bool
}

func (c *checker) arrive(mode Mode) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.modes = append(c.modes, mode)
	c.granted = append(c.granted, false)
	c.leaving = append(c.leaving, false)
	return len(c.modes) - 1
}

// leave marks a request that may leave the queue without a turn: its
// context is about to end, or it was refused.
func (c *checker) leave(i int) {
	c.mu.Lock()
	c.leaving[i] = true
	c.mu.Unlock()
}

// fail reports a broken invariant; a few reports tell the story, thousands
// would bury it.
func (c *checker) fail(format string, args ...any) {
	if c.failures++; c.failures <= 5 {
		c.t.Errorf(format, args...)
	}
}

func (c *checker) grant(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mode := c.modes[i]
	if mode == Write {
		if c.writers != 0 || c.readers != 0 {
			c.fail("writer %d admitted beside %d writers and %d readers", i, c.writers, c.readers)
		}
		c.writers++
	} else {
		if c.writers != 0 {
			c.fail("reader %d admitted beside a writer", i)
		}
		c.readers++
		if c.readers > c.maxReaders {
			c.fail("%d readers at once, max %d", c.readers, c.maxReaders)
		}
	}
	// FIFO: an earlier arrival that is not leaving must already hold or
	// have held its turn, unless both are readers that may share one batch.
	for j := range i {
		if !c.granted[j] && !c.leaving[j] && (mode == Write || c.modes[j] == Write) {
			c.fail("%v %d admitted before earlier %v %d", mode, i, c.modes[j], j)
		}
	}
	c.granted[i] = true
}

func (c *checker) release(mode Mode) {
	c.mu.Lock()
	if mode == Write {
		c.writers--
	} else {
		c.readers--
	}
	c.mu.Unlock()
}

// TestStressInvariants runs random acquires, cancellations and releases over
// many keys and checks every grant against the model: never two writers,
// never a writer with readers, never more than MaxReaders, FIFO, and an
// empty table at the end.
func TestStressInvariants(t *testing.T) {
	const (
		keys       = 8
		perKey     = 400
		maxReaders = 3
	)
	tbl := New(Limits{MaxReaders: maxReaders, MaxWaiting: 12})
	var all sync.WaitGroup
	for k := range keys {
		key := fmt.Sprintf("session-%d", k)
		c := &checker{t: t, maxReaders: maxReaders}
		all.Add(1)
		go func() {
			defer all.Done()
			rng := rand.New(rand.NewPCG(uint64(k), 42))
			var requests sync.WaitGroup
			for range perKey {
				mode := Write
				if rng.IntN(3) > 0 {
					mode = Read
				}
				hold := rng.IntN(50)
				cancelAfter := -1
				if rng.IntN(5) == 0 {
					cancelAfter = rng.IntN(10)
				}
				var maxWait time.Duration
				if rng.IntN(6) == 0 {
					maxWait = time.Duration(1+rng.IntN(200)) * time.Microsecond
				}
				// Some give up from their onQueued hook, as a request
				// whose body reader finds its client gone.
				cancelWhenQueued := rng.IntN(8) == 0
				i := c.arrive(mode)
				if maxWait > 0 {
					c.leave(i) // it may time out
				}
				ctx, cancel := context.WithCancel(context.Background())
				probe := newProbe(ctx)
				answered := make(chan struct{})
				requests.Add(1)
				go func() {
					defer requests.Done()
					defer cancel()
					hookCalls := 0
					turn, res, err := tbl.AcquireFunc(probe, key, mode, maxWait, func() {
						hookCalls++
						if cancelWhenQueued {
							c.leave(i)
							cancel()
						}
					})
					if errors.Is(err, ErrQueueFull) {
						c.leave(i) // refused: it never joined the queue
					}
					if want := btoi(res.Queued); hookCalls != want {
						c.mu.Lock()
						c.fail("request %d: onQueued called %d times, want %d (queued %v, err %v)", i, hookCalls, want, res.Queued, err)
						c.mu.Unlock()
					}
					close(answered)
					if err != nil {
						return
					}
					c.grant(i)
					for range hold {
						runtime.Gosched()
					}
					c.release(mode)
					turn.Release()
				}()
				if cancelAfter >= 0 {
					go func() {
						for range cancelAfter {
							runtime.Gosched()
						}
						c.leave(i)
						cancel()
					}()
				}
				// The next request arrives only once this one has its place.
				select {
				case <-probe.entered:
				case <-answered:
				}
			}
			requests.Wait()
		}()
	}
	all.Wait()
	if !isEmpty(tbl) {
		t.Fatal("table not empty at the end")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestStressReload changes the limits while requests hold and wait, as a
// config reload does, and checks that nobody is lost.
func TestStressReload(t *testing.T) {
	tbl := New(Limits{MaxReaders: 2, MaxWaiting: 1000})
	stop := make(chan struct{})
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tbl.SetLimits(Limits{MaxReaders: 1 + i%4, MaxWaiting: 1000})
			runtime.Gosched()
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	writers := map[string]int{}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 300 {
				key := fmt.Sprintf("s%d", (g+n)%4)
				mode := Mode(n % 2)
				turn, _, err := tbl.Acquire(context.Background(), key, mode, 0)
				if err != nil {
					t.Errorf("acquire: %v", err)
					return
				}
				if mode == Write {
					mu.Lock()
					writers[key]++
					if writers[key] > 1 {
						t.Errorf("two writers on %s", key)
					}
					mu.Unlock()
					runtime.Gosched()
					mu.Lock()
					writers[key]--
					mu.Unlock()
				}
				turn.Release()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-reloaded
	if !isEmpty(tbl) {
		t.Fatal("table not empty at the end")
	}
}

func TestStatsAndBusiest(t *testing.T) {
	tbl := New(Limits{MaxReaders: 2, MaxWaiting: 8})
	ctx := context.Background()
	a := mustGrant(t, startAcquire(t, tbl, ctx, "a", Write))
	b := mustGrant(t, startAcquire(t, tbl, ctx, "b", Read))
	waitA1 := startAcquire(t, tbl, ctx, "a", Read)
	waitA2 := startAcquire(t, tbl, ctx, "a", Write)
	if !tbl.Busy("a") || !tbl.Busy("b") || tbl.Busy("c") {
		t.Fatal("Busy does not match the holders")
	}
	if keys, waiting := tbl.Stats(); keys != 2 || waiting != 2 {
		t.Fatalf("Stats = %d keys, %d waiting; want 2, 2", keys, waiting)
	}
	busiest := tbl.Busiest(5)
	if len(busiest) != 2 || busiest[0].Key != "a" || !busiest[0].Writer || busiest[0].Waiting != 2 ||
		busiest[0].OldestWaitSince.IsZero() || busiest[1].Key != "b" || busiest[1].Readers != 1 {
		t.Fatalf("Busiest = %+v", busiest)
	}
	if got := tbl.Busiest(1); len(got) != 1 || got[0].Key != "a" {
		t.Fatalf("Busiest(1) = %+v", got)
	}
	a.Release()
	mustGrant(t, waitA1).Release()
	mustGrant(t, waitA2).Release()
	b.Release()
	if keys, waiting := tbl.Stats(); keys != 0 || waiting != 0 {
		t.Fatalf("Stats after release = %d, %d", keys, waiting)
	}
}

func TestCloseTurnsWaitersAway(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 8})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	waiter := startAcquire(t, tbl, ctx, "s", Write)
	idle := startAcquire(t, tbl, ctx, "other", Read)
	idleTurn := mustGrant(t, idle)
	tbl.Close()
	if a := <-waiter; !errors.Is(a.err, ErrClosed) {
		t.Fatalf("waiter after Close: %v, want ErrClosed", a.err)
	}
	if _, _, err := tbl.Acquire(ctx, "new", Write, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v, want ErrClosed", err)
	}
	holder.Release() // holders finish normally
	idleTurn.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

func TestMaxWaitTimesOut(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 8})
	ctx := context.Background()
	holder := mustGrant(t, startAcquire(t, tbl, ctx, "s", Write))
	// The holder keeps its turn until after the waiter has given up, so
	// the timeout is certain, however slow the machine.
	_, res, err := tbl.Acquire(ctx, "s", Read, time.Millisecond)
	if !errors.Is(err, ErrTimeout) || !res.Queued {
		t.Fatalf("got %v (queued %v), want ErrTimeout after queueing", err, res.Queued)
	}
	if _, waiting := tbl.Stats(); waiting != 0 {
		t.Fatalf("%d still waiting after the timeout", waiting)
	}
	holder.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

// TestAcquireFuncCallsOnQueuedOnlyToWait: the hook runs once the caller has
// its place (it is counted as waiting), and not for a turn granted at once
// or a refusal.
func TestAcquireFuncCallsOnQueuedOnlyToWait(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 1})
	hook := func() { t.Fatal("onQueued called for a caller that did not wait") }
	holder, _, err := tbl.AcquireFunc(context.Background(), "k", Write, 0, hook)
	if err != nil {
		t.Fatal(err)
	}

	queued := make(chan int, 1)
	done := make(chan acquired, 1)
	go func() {
		turn, res, err := tbl.AcquireFunc(context.Background(), "k", Write, 0, func() {
			_, waiting := tbl.Stats()
			queued <- waiting
		})
		done <- acquired{turn, res, err}
	}()
	if waiting := <-queued; waiting != 1 {
		t.Fatalf("inside onQueued: %d waiting, want 1", waiting)
	}
	if _, _, err := tbl.AcquireFunc(context.Background(), "k", Write, 0, hook); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third caller: %v, want ErrQueueFull", err)
	}
	holder.Release()
	a := <-done
	if a.err != nil || !a.res.Queued {
		t.Fatalf("waiter: %+v", a)
	}
	a.turn.Release()

	tbl.Close()
	if _, _, err := tbl.AcquireFunc(context.Background(), "k", Write, 0, hook); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}

// TestAcquireFuncHookMayEndWait: a hook that ends the caller's context
// (the work it started found the caller gone) takes it out of the queue,
// and a hook may call the table, here releasing the turn it waits for.
func TestAcquireFuncHookMayEndWait(t *testing.T) {
	tbl := New(Limits{MaxReaders: 1, MaxWaiting: 4})
	holder, _, err := tbl.Acquire(context.Background(), "k", Write, 0)
	if err != nil {
		t.Fatal(err)
	}
	gone := errors.New("client gone")
	ctx, cancel := context.WithCancelCause(context.Background())
	_, res, err := tbl.AcquireFunc(ctx, "k", Write, 0, func() { cancel(gone) })
	if !errors.Is(err, context.Canceled) || !res.Queued || context.Cause(ctx) != gone {
		t.Fatalf("canceled from the hook: %v (cause %v), %+v; want context.Canceled, queued", err, context.Cause(ctx), res)
	}
	if _, waiting := tbl.Stats(); waiting != 0 {
		t.Fatalf("%d waiting after the hook gave up, want 0", waiting)
	}

	turn, res, err := tbl.AcquireFunc(context.Background(), "k", Write, 0, holder.Release)
	if err != nil || !res.Queued {
		t.Fatalf("hook releasing the holder: %v, %+v", err, res)
	}
	turn.Release()
	if !isEmpty(tbl) {
		t.Fatal("table not empty")
	}
}
