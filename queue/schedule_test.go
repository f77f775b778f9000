package queue

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The schedule driver plays a sequence of operations against a Table and a
// reference model of it, one operation at a time, and after each compares
// the table's state with the model's: who holds each touched key, who waits
// on it, in which order, and which waiters the operation let in. Waiting
// requests are goroutines blocked in Acquire; everything else runs on the
// driver's goroutine, so the outcome of every operation is determined and a
// difference from the model is a bug, never a matter of timing.

// scheduleOp is one operation of a schedule.
type scheduleOp uint8

const (
	opAcquireWrite scheduleOp = iota
	opAcquireRead
	opTimeout // an acquire that gives up at once if it has to wait
	opCancel  // a waiter's context ends
	opRelease
	opSetLimits
	opClose // the table closes; the driver then starts a new one
	opCount
)

// modelWaiter is a request the model expects to wait, and its goroutine.
type modelWaiter struct {
	mode   Mode
	cancel context.CancelFunc
	answer chan acquired
}

// modelKey is the model of one busy key.
type modelKey struct {
	readers int
	writer  bool
	queue   []*modelWaiter
	holders []Turn
}

type scheduleDriver struct {
	t      testing.TB
	rng    *rand.Rand
	keys   []string
	limits Limits
	tbl    *Table
	model  map[string]*modelKey
	// busy lists the keys of model, for picking one at random.
	busy   []string
	ops    [opCount]int
	grants int
}

func newScheduleDriver(t testing.TB, keys int, seed uint64) *scheduleDriver {
	d := &scheduleDriver{t: t, rng: rand.New(rand.NewPCG(seed, 11)), limits: Limits{MaxReaders: 2, MaxWaiting: 3}}
	for i := range keys {
		d.keys = append(d.keys, fmt.Sprintf("session-%d", i))
	}
	d.reset()
	return d
}

func (d *scheduleDriver) reset() {
	d.tbl = New(d.limits)
	d.model = map[string]*modelKey{}
	d.busy = d.busy[:0]
}

// pickKey returns a busy key half of the time, else any key.
func (d *scheduleDriver) pickKey(arg uint32) string {
	if len(d.busy) > 0 && arg&1 == 0 {
		return d.busy[int(arg>>1)%len(d.busy)]
	}
	return d.keys[int(arg>>1)%len(d.keys)]
}

func (d *scheduleDriver) keyState(key string) *modelKey {
	m := d.model[key]
	if m == nil {
		m = &modelKey{}
		d.model[key] = m
		d.busy = append(d.busy, key)
	}
	return m
}

func (d *scheduleDriver) admits(m *modelKey, mode Mode) bool {
	if m.writer {
		return false
	}
	if mode == Write {
		return m.readers == 0
	}
	return m.readers < max(d.limits.MaxReaders, 1)
}

func (m *modelKey) admit(mode Mode) {
	if mode == Write {
		m.writer = true
	} else {
		m.readers++
	}
}

// grant lets the model's waiters in from the head of key's queue, takes
// their turns from their goroutines, and checks the table agrees.
func (d *scheduleDriver) grant(key string) {
	m := d.model[key]
	for len(m.queue) > 0 && d.admits(m, m.queue[0].mode) {
		w := m.queue[0]
		m.queue = m.queue[1:]
		m.admit(w.mode)
		var a acquired
		select {
		case a = <-w.answer:
		case <-time.After(10 * time.Second):
			d.t.Fatalf("%s: the model grants a waiting %v, which was not answered in 10s", key, w.mode)
		}
		if a.err != nil {
			d.t.Fatalf("%s: the model grants a waiting %v, which got %v", key, w.mode, a.err)
		}
		m.holders = append(m.holders, a.turn)
		d.grants++
	}
}

// forget drops an idle key from the model.
func (d *scheduleDriver) forget(key string) {
	m := d.model[key]
	if m.writer || m.readers > 0 || len(m.queue) > 0 {
		return
	}
	delete(d.model, key)
	for i, k := range d.busy {
		if k == key {
			d.busy[i] = d.busy[len(d.busy)-1]
			d.busy = d.busy[:len(d.busy)-1]
			break
		}
	}
}

// check compares the table's state of key with the model's.
func (d *scheduleDriver) check(key string, op scheduleOp) {
	m := d.model[key]
	s := d.tbl.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[key]
	if m == nil {
		if e != nil {
			d.t.Fatalf("after op %d: %s idle in the model but the table keeps it", op, key)
		}
		return
	}
	if e == nil {
		d.t.Fatalf("after op %d: %s busy in the model (%d readers, writer %v, %d waiting) but not in the table",
			op, key, m.readers, m.writer, len(m.queue))
	}
	if e.readers != m.readers || e.writer != m.writer || e.waiting != len(m.queue) {
		d.t.Fatalf("after op %d: %s holds %d readers, writer %v, %d waiting; model %d, %v, %d",
			op, key, e.readers, e.writer, e.waiting, m.readers, m.writer, len(m.queue))
	}
	i := 0
	for w := e.head; w != nil; w = w.next {
		if w.mode != m.queue[i].mode {
			d.t.Fatalf("after op %d: %s waiter %d is a %v, model %v", op, key, i, w.mode, m.queue[i].mode)
		}
		i++
	}
}

// step plays one operation; arg picks its key, mode or victim.
func (d *scheduleDriver) step(op scheduleOp, arg uint32) {
	op %= opCount
	d.ops[op]++
	switch op {
	case opAcquireWrite, opAcquireRead, opTimeout:
		mode := Write
		if op == opAcquireRead || (op == opTimeout && arg&(1<<20) != 0) {
			mode = Read
		}
		key := d.pickKey(arg)
		m := d.keyState(key)
		switch {
		case len(m.queue) == 0 && d.admits(m, mode):
			// Granted at once, on this goroutine: a hook call means the
			// table made it wait.
			ctx, cancel := context.WithCancel(context.Background())
			turn, res, err := d.tbl.AcquireFunc(ctx, key, mode, 0, func() {
				d.t.Errorf("%s: a %v the model admits at once has to wait", key, mode)
				cancel()
			})
			cancel()
			if err != nil || res.Queued {
				d.t.Fatalf("%s: a %v the model admits at once got %v (queued %v)", key, mode, err, res.Queued)
			}
			m.admit(mode)
			m.holders = append(m.holders, turn)
		case len(m.queue) >= d.limits.MaxWaiting:
			_, _, err := d.tbl.Acquire(context.Background(), key, mode, 0)
			if !errors.Is(err, ErrQueueFull) {
				d.t.Fatalf("%s: a %v the model refuses (%d waiting, max %d) got %v", key, mode, len(m.queue), d.limits.MaxWaiting, err)
			}
		case op == opTimeout:
			// Nothing else happens while it waits, so it times out.
			_, res, err := d.tbl.Acquire(context.Background(), key, mode, time.Nanosecond)
			if !errors.Is(err, ErrTimeout) || !res.Queued {
				d.t.Fatalf("%s: a %v with a nanosecond to wait got %v (queued %v)", key, mode, err, res.Queued)
			}
			// Its leaving may let the readers behind it in.
			d.grant(key)
		default:
			ctx, cancel := context.WithCancel(context.Background())
			probe := newProbe(ctx)
			w := &modelWaiter{mode: mode, cancel: cancel, answer: make(chan acquired, 1)}
			go func() {
				turn, res, err := d.tbl.Acquire(probe, key, mode, 0)
				w.answer <- acquired{turn, res, err}
			}()
			select {
			case <-probe.entered:
			case a := <-w.answer:
				d.t.Fatalf("%s: a %v the model queues was answered at once: %v", key, mode, a.err)
			}
			m.queue = append(m.queue, w)
		}
		d.forget(key)
		d.check(key, op)
	case opCancel:
		if len(d.busy) == 0 {
			return
		}
		key := d.busy[int(arg)%len(d.busy)]
		m := d.model[key]
		if len(m.queue) == 0 {
			return
		}
		i := int(arg>>8) % len(m.queue)
		w := m.queue[i]
		m.queue = append(m.queue[:i], m.queue[i+1:]...)
		w.cancel()
		if a := <-w.answer; !errors.Is(a.err, context.Canceled) {
			d.t.Fatalf("%s: a canceled waiting %v got %v", key, w.mode, a.err)
		}
		d.grant(key)
		d.forget(key)
		d.check(key, op)
	case opRelease:
		if len(d.busy) == 0 {
			return
		}
		key := d.busy[int(arg)%len(d.busy)]
		m := d.model[key]
		if len(m.holders) == 0 {
			return
		}
		i := int(arg>>8) % len(m.holders)
		turn := m.holders[i]
		m.holders = append(m.holders[:i], m.holders[i+1:]...)
		turn.Release()
		if turn.mode == Write {
			m.writer = false
		} else {
			m.readers--
		}
		d.grant(key)
		d.forget(key)
		d.check(key, op)
	case opSetLimits:
		d.limits = Limits{MaxReaders: 1 + int(arg%4), MaxWaiting: int(arg>>4) % 7}
		d.tbl.SetLimits(d.limits)
		for _, key := range append([]string(nil), d.busy...) {
			d.grant(key)
			d.forget(key)
			d.check(key, op)
		}
	case opClose:
		d.close()
	}
}

// close closes the table: every waiter is turned away, holders release
// afterwards, and the table must end empty.
func (d *scheduleDriver) close() {
	d.tbl.Close()
	for key, m := range d.model {
		for _, w := range m.queue {
			if a := <-w.answer; !errors.Is(a.err, ErrClosed) {
				d.t.Fatalf("%s: a %v waiting at Close got %v", key, w.mode, a.err)
			}
			w.cancel()
		}
		if _, _, err := d.tbl.Acquire(context.Background(), key, Write, 0); !errors.Is(err, ErrClosed) {
			d.t.Fatalf("%s: an acquire after Close got %v", key, err)
		}
		for _, turn := range m.holders {
			turn.Release()
		}
	}
	if !isEmpty(d.tbl) {
		d.t.Fatal("table not empty after Close and the last release")
	}
	d.reset()
}

var scheduleOps = flag.Int("schedule.ops", 200_000, "operations of TestLongRandomSchedule (the full run is 1000000)")

// TestLongRandomSchedule plays a long random schedule over 10,000 keys:
// acquires of both modes (granted at once, queued or refused), waiters that
// time out or are canceled, releases, limit changes and closes, each checked
// against the model (never two writers, never a writer with readers, never
// more than max_readers, FIFO grants, every waiter answered, the table
// empty at the end). The full size runs with -schedule.ops=1000000.
func TestLongRandomSchedule(t *testing.T) {
	d := newScheduleDriver(t, 10_000, uint64(time.Now().UnixNano()))
	held, mostHeld := 0, 0
	for n := range *scheduleOps {
		// Keep a few thousand requests in flight: releases outweigh
		// acquires once many are held.
		r := d.rng.Uint32()
		var op scheduleOp
		switch p := d.rng.IntN(1000); {
		case p < 1 && d.rng.IntN(20) == 0:
			op = opClose
		case p < 3:
			op = opSetLimits
		case p < 80:
			op = opCancel
		case p < 120:
			op = opTimeout
		case p < 420 || (held > 3000 && p < 700):
			op = opRelease
		case p < 700:
			op = opAcquireWrite
		default:
			op = opAcquireRead
		}
		d.step(op, r)
		if n%1000 == 0 {
			held = 0
			for _, m := range d.model {
				held += len(m.holders) + len(m.queue)
			}
			mostHeld = max(mostHeld, held)
		}
	}
	d.close()
	t.Logf("%d ops over %d keys: %v (write, read, timeout, cancel, release, limits, close); %d waiters granted; up to %d requests in flight",
		*scheduleOps, len(d.keys), d.ops, d.grants, mostHeld)
}

// FuzzQueueSchedule drives the table with a fuzzed schedule over four keys
// against the model: each pair of bytes is an operation and its argument.
func FuzzQueueSchedule(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 4, 0})
	f.Add([]byte{1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 0, 4, 1, 5, 3})
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 4, 0, 2, 0, 6, 0})
	f.Fuzz(func(t *testing.T, schedule []byte) {
		d := newScheduleDriver(t, 4, 1)
		for i := 0; i+1 < len(schedule) && i < 2000; i += 2 {
			arg := uint32(schedule[i+1])
			// Spread the argument so that keys, modes and victims differ.
			arg |= arg<<8 | arg<<16 | (arg&0x80)<<13
			d.step(scheduleOp(schedule[i]), arg)
		}
		d.close()
	})
}
