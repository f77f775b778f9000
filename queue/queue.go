// Package queue is a table of per-key readers/writer FIFO queues.
//
// A Table hands out turns on keys (session IDs). On one key, a writer's turn
// is exclusive and up to MaxReaders readers may share a turn. Turns are
// granted in strict arrival order: a reader that arrives behind a waiting
// writer waits for it, so writers are never starved, and the readers at the
// head of the queue are admitted together up to MaxReaders.
//
// Concurrency contract:
//   - Acquire blocks the calling goroutine only; no other goroutine is
//     started for a waiter. A release wakes the next waiters directly, there
//     is no polling.
//   - A key has state only while it has holders or waiters, so memory is
//     proportional to the requests in flight, not to the keys ever seen.
//   - Keys are spread over independently locked shards, so unrelated keys do
//     not contend on one mutex.
//   - A waiter whose context ends leaves the queue at once. If its turn was
//     granted at that same moment, the turn is passed on; no turn is ever
//     lost or doubled.
package queue

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Mode says whether a turn is shared (Read) or exclusive (Write).
type Mode uint8

const (
	// Write turns are exclusive: no other writer and no reader runs beside one.
	Write Mode = iota
	// Read turns are shared with up to MaxReaders other readers.
	Read
)

func (m Mode) String() string {
	if m == Read {
		return "reader"
	}
	return "writer"
}

// ErrQueueFull is returned by Acquire when MaxWaiting requests already wait
// on the key.
var ErrQueueFull = errors.New("session queue full")

// ErrTimeout is returned by Acquire when the caller waited maxWait.
var ErrTimeout = errors.New("waited too long for a session's turn")

// ErrClosed is returned by Acquire once the table is closed.
var ErrClosed = errors.New("session queue closed")

// Limits are the per-key bounds of a Table.
type Limits struct {
	// MaxReaders is how many readers of one key may hold a turn together.
	// Values below 1 are treated as 1.
	MaxReaders int
	// MaxWaiting is how many requests may wait on one key; one more is
	// refused with ErrQueueFull. Zero means no request may wait.
	MaxWaiting int
}

const shardCount = 64

// Table is a set of per-key queues. The zero value is not usable; use New.
type Table struct {
	seed   maphash.Seed
	limits atomic.Pointer[Limits]
	closed atomic.Bool
	shards [shardCount]shard
}

type shard struct {
	mu   sync.Mutex
	keys map[string]*entry
	// free recycles entries so that an uncontended acquire allocates nothing.
	free []*entry
	_    [24]byte // keep neighbouring shards' mutexes off one cache line
}

// entry is the state of one busy key: its holders and its FIFO of waiters.
type entry struct {
	key        string
	readers    int
	writer     bool
	head, tail *waiter
	waiting    int
}

type waiter struct {
	mode       Mode
	since      time.Time
	granted    bool
	turnedAway bool          // the table was closed while it waited
	ready      chan struct{} // closed when the turn is granted
	prev, next *waiter
}

// New returns an empty Table with the given limits.
func New(limits Limits) *Table {
	t := &Table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].keys = make(map[string]*entry)
	}
	t.limits.Store(normalize(limits))
	return t
}

func normalize(l Limits) *Limits {
	if l.MaxReaders < 1 {
		l.MaxReaders = 1
	}
	if l.MaxWaiting < 0 {
		l.MaxWaiting = 0
	}
	return &l
}

// Limits returns the limits in force.
func (t *Table) Limits() Limits { return *t.limits.Load() }

// SetLimits changes the limits while the table is in use (a config reload).
// Nobody holding or waiting is dropped: holders keep their turns, waiters
// stay queued, and a raised MaxReaders admits waiting readers at once.
// A lowered MaxWaiting only refuses new arrivals.
func (t *Table) SetLimits(limits Limits) {
	t.limits.Store(normalize(limits))
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.keys {
			t.grantLocked(e)
		}
		s.mu.Unlock()
	}
}

// Turn is a granted turn on a key. Release it exactly once, when the work it
// guards has ended.
type Turn struct {
	table *Table
	shard *shard
	entry *entry
	mode  Mode
}

// Result tells how Acquire got its turn.
type Result struct {
	// Queued is true when the caller had to wait behind others.
	Queued bool
	// Ahead is how many requests held or waited on the key on arrival.
	Ahead int
}

// Acquire waits for a turn of the given mode on key, in arrival order, for
// at most maxWait (no limit when maxWait <= 0). It returns ErrQueueFull at
// once when MaxWaiting requests already wait on the key, ErrTimeout after
// maxWait, ErrClosed when the table is closed, and ctx.Err() when ctx ends
// first; in all these cases the caller holds nothing and must not call
// Release. A turn granted at once costs no timer and no allocation.
func (t *Table) Acquire(ctx context.Context, key string, mode Mode, maxWait time.Duration) (Turn, Result, error) {
	return t.AcquireFunc(ctx, key, mode, maxWait, nil)
}

// AcquireFunc is Acquire that calls onQueued, unless it is nil, when the
// caller has to wait: once its place in the queue is taken and before it
// waits, at most once, and never for a turn granted at once or a refusal
// (ErrQueueFull, ErrClosed). It lets the caller start work that only a
// waiting request needs, without racing the table for the answer.
//
// onQueued runs on the calling goroutine, outside the table's locks, so it
// may call the table. It should return promptly: maxWait already runs, and
// a turn granted meanwhile is taken only once it returns (if ctx has ended
// by then too, the caller may give up and pass the turn on, as any waiter
// whose turn and cancellation come together). To give up the wait from work
// it started elsewhere, it ends ctx.
func (t *Table) AcquireFunc(ctx context.Context, key string, mode Mode, maxWait time.Duration, onQueued func()) (Turn, Result, error) {
	s := t.shardFor(key)
	s.mu.Lock()
	if t.closed.Load() {
		s.mu.Unlock()
		return Turn{}, Result{}, ErrClosed
	}
	e := s.keys[key]
	if e == nil {
		e = s.newEntry(key)
	}
	limits := t.limits.Load()
	if e.head == nil && admits(e, mode, limits) {
		e.admit(mode)
		s.mu.Unlock()
		return Turn{table: t, shard: s, entry: e, mode: mode}, Result{}, nil
	}
	ahead := e.readers + e.waiting
	if e.writer {
		ahead++
	}
	if e.waiting >= limits.MaxWaiting {
		s.mu.Unlock()
		return Turn{}, Result{Ahead: ahead}, ErrQueueFull
	}
	w := &waiter{mode: mode, since: time.Now(), ready: make(chan struct{})}
	e.push(w)
	s.mu.Unlock()

	turn := Turn{table: t, shard: s, entry: e, mode: mode}
	res := Result{Queued: true, Ahead: ahead}
	var expired <-chan time.Time
	if maxWait > 0 {
		timer := time.NewTimer(maxWait)
		defer timer.Stop()
		expired = timer.C
	}
	if onQueued != nil {
		onQueued()
	}
	var gaveUp error
	select {
	case <-w.ready:
		if w.turnedAway {
			return Turn{}, res, ErrClosed
		}
		return turn, res, nil
	case <-ctx.Done():
		gaveUp = ctx.Err()
	case <-expired:
		gaveUp = ErrTimeout
	}

	s.mu.Lock()
	if w.turnedAway {
		s.mu.Unlock()
		return Turn{}, res, gaveUp
	}
	if w.granted {
		// The turn arrived together with the cancellation: pass it on.
		s.mu.Unlock()
		turn.Release()
		return Turn{}, res, gaveUp
	}
	e.remove(w)
	// A writer leaving the head may let the readers behind it in.
	t.grantLocked(e)
	s.releaseIfIdle(e)
	s.mu.Unlock()
	return Turn{}, res, gaveUp
}

// Close turns away every waiting request and every later one with
// ErrClosed, for a shutdown. Requests holding a turn keep it until they
// release it.
func (t *Table) Close() {
	t.closed.Store(true)
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.keys {
			for w := e.head; w != nil; w = e.head {
				e.remove(w)
				w.turnedAway = true
				close(w.ready)
			}
			s.releaseIfIdle(e)
		}
		s.mu.Unlock()
	}
}

// Release ends the turn and grants the next waiters theirs.
func (turn Turn) Release() {
	s, e := turn.shard, turn.entry
	s.mu.Lock()
	if turn.mode == Read {
		e.readers--
	} else {
		e.writer = false
	}
	turn.table.grantLocked(e)
	s.releaseIfIdle(e)
	s.mu.Unlock()
}

func (t *Table) shardFor(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)%shardCount]
}

func admits(e *entry, mode Mode, limits *Limits) bool {
	if e.writer {
		return false
	}
	if mode == Write {
		return e.readers == 0
	}
	return e.readers < limits.MaxReaders
}

func (e *entry) admit(mode Mode) {
	if mode == Write {
		e.writer = true
	} else {
		e.readers++
	}
}

// grantLocked admits waiters from the head of e's queue for as long as the
// head is compatible with the holders, and stops at the first that is not,
// which keeps the order strictly FIFO.
func (t *Table) grantLocked(e *entry) {
	limits := t.limits.Load()
	for w := e.head; w != nil && admits(e, w.mode, limits); w = e.head {
		e.remove(w)
		e.admit(w.mode)
		w.granted = true
		close(w.ready)
	}
}

func (e *entry) push(w *waiter) {
	w.prev = e.tail
	if e.tail != nil {
		e.tail.next = w
	} else {
		e.head = w
	}
	e.tail = w
	e.waiting++
}

func (e *entry) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		e.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		e.tail = w.prev
	}
	w.prev, w.next = nil, nil
	e.waiting--
}

func (s *shard) newEntry(key string) *entry {
	var e *entry
	if n := len(s.free); n > 0 {
		e = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		e = new(entry)
	}
	e.key = key
	s.keys[key] = e
	return e
}

// maxFreeEntries bounds each shard's recycling list, so a burst of many
// sessions does not pin memory after it has passed.
const maxFreeEntries = 64

func (s *shard) releaseIfIdle(e *entry) {
	if e.writer || e.readers > 0 || e.head != nil {
		return
	}
	delete(s.keys, e.key)
	*e = entry{}
	if len(s.free) < maxFreeEntries {
		s.free = append(s.free, e)
	}
}
