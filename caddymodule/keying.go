package caddymodule

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionqueue/caddy-session-queue/idgen"
	"github.com/sessionqueue/caddy-session-queue/queue"
)

// keying derives a zone's queue keys from session IDs. A reload may change
// key_pattern while requests hold or wait for turns under keys of the old
// pattern; a request arriving after it, keyed by the new pattern alone,
// would queue elsewhere and run beside them. So the zone keeps, besides the
// pattern in force, every older pattern still in use (an epoch, with a
// count of the requests holding or waiting under it), and a request takes
// its turn on its session's key under each of them.
//
// Lock order: a request that has several keys takes them in sorted order,
// so no two requests can each hold what the other waits for.
//
// Correctness rests on one ordering: a request counts itself in the current
// epoch, then checks that it is still current (else it counts itself out
// and tries again). A request that passes that check before a reload
// switches epochs is counted before the switch, so every request entering
// after the switch sees the old epoch in use and queues behind it; one
// that checks after the switch moves to the new epoch.
type keying struct {
	epochs atomic.Pointer[keyEpochs]
	// mu serializes the writers of epochs.
	mu sync.Mutex
}

// keyEpoch is one key_pattern of a zone.
type keyEpoch struct {
	pattern idgen.KeyPattern
	// users count the requests holding or waiting for a turn under it,
	// in stripes as the zone's counts are (see zoneStripe): every request
	// counts itself in and out.
	users [stripeCount]struct {
		n atomic.Int64
		_ [56]byte
	}
}

// inUse reports whether requests hold or wait for a turn under e.
func (e *keyEpoch) inUse() bool {
	var n int64
	for i := range e.users {
		n += e.users[i].n.Load()
	}
	return n > 0
}

// keyEpochs is one immutable state of a keying: the current epoch and the
// older ones that may still be in use, newest first.
type keyEpochs struct {
	current *keyEpoch
	older   []*keyEpoch
}

// setPattern puts pattern in force; an unchanged pattern keeps its epoch.
func (k *keying) setPattern(pattern idgen.KeyPattern) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.epochs.Load()
	if old != nil && old.current.pattern.String() == pattern.String() {
		return
	}
	next := &keyEpochs{current: &keyEpoch{pattern: pattern}}
	if old != nil {
		// The previous current epoch is kept whatever its count: a
		// request may be between counting itself in and checking it is
		// current. prune drops it once it is idle.
		next.older = append(next.older, old.current)
		next.older = append(next.older, inUse(old.older)...)
	}
	k.epochs.Store(next)
}

// enter counts a request in the current epoch, in the given stripe, and
// returns it, with the state to find the older epochs in. Call leave with
// the same stripe once the request holds no turn under it.
func (k *keying) enter(stripe int) (*keyEpoch, *keyEpochs) {
	for {
		e := k.epochs.Load().current
		e.users[stripe].n.Add(1)
		if now := k.epochs.Load(); now.current == e {
			return e, now
		}
		k.leave(e, stripe)
	}
}

// leave counts a request out of e; the last request of an older epoch
// drops it. (A stripe that drops to 0 is the cue to look at the others.)
func (k *keying) leave(e *keyEpoch, stripe int) {
	if e.users[stripe].n.Add(-1) == 0 && k.epochs.Load().current != e {
		k.prune()
	}
}

// prune drops the older epochs nobody uses any more. An older epoch seen
// idle stays idle: only a request that found it current may count itself
// in, and it then finds it is not current and counts itself out.
func (k *keying) prune() {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.epochs.Load()
	if kept := inUse(old.older); len(kept) < len(old.older) {
		k.epochs.Store(&keyEpochs{current: old.current, older: kept})
	}
}

func inUse(epochs []*keyEpoch) []*keyEpoch {
	var used []*keyEpoch
	for _, e := range epochs {
		if e.inUse() {
			used = append(used, e)
		}
	}
	return used
}

// sessionTurn is a request's turn on its session, under every pattern
// still in use. Release it exactly once.
type sessionTurn struct {
	keying *keying
	epoch  *keyEpoch
	stripe int // the stripe epoch counts it in
	turn   queue.Turn
	// more are the turns on the session's other keys, nil unless a reload
	// changed key_pattern while requests were in flight.
	more []queue.Turn
	// leases are the session's cluster leases, in cluster mode.
	leases clusterHold
}

// Release gives back every turn, then leaves the epoch: leaving first would
// let a request that arrives meanwhile skip a key still held.
func (t sessionTurn) Release() {
	t.turn.Release()
	for _, turn := range t.more {
		turn.Release()
	}
	t.leases.drop()
	t.keying.leave(t.epoch, t.stripe)
}

// acquire waits, for at most maxWait in all from since, the request's
// arrival (no limit when maxWait <= 0), for a turn of the given mode on the session whose lineage is rooted at
// root. key is the session's queue key under the pattern in force,
// returned whatever the outcome. The errors are those of queue.Acquire;
// after one, the request holds nothing. res tells whether it waited, and
// how many requests were ahead of it on all its keys together.
func (z *zone) acquire(ctx context.Context, stripe *zoneStripe, root string, mode queue.Mode, since time.Time, maxWait time.Duration, onQueued func()) (turn sessionTurn, key string, res queue.Result, err error) {
	epoch, epochs := z.keying.enter(stripe.index)
	key = epoch.pattern.Key(root)
	turn = sessionTurn{keying: &z.keying, epoch: epoch, stripe: stripe.index}
	var deadline time.Time
	if maxWait > 0 {
		deadline = since.Add(maxWait)
	}
	if len(epochs.older) == 0 {
		turn.turn, res, err = z.table.AcquireFunc(ctx, key, mode, maxWait, onQueued)
		if err == nil {
			// In cluster mode, the head of the local queue then waits for
			// the session's lease, holding its local turn.
			turn.leases, err = z.holdCluster(ctx, []string{key}, deadline)
			if err != nil {
				turn.turn.Release()
			}
		}
		if err != nil {
			z.keying.leave(epoch, stripe.index)
			return sessionTurn{}, key, res, err
		}
		return turn, key, res, nil
	}

	keys := []string{key}
	for _, older := range epochs.older {
		if !older.inUse() {
			continue
		}
		if olderKey := older.pattern.Key(root); !slices.Contains(keys, olderKey) {
			keys = append(keys, olderKey)
		}
	}
	// Every request takes its keys in one global order, whatever its
	// epoch: two patterns may key different sessions alike, or a reload
	// may bring an older pattern back, so the order of the epochs is not
	// one order of the keys, and taking keys by it could deadlock.
	slices.Sort(keys)
	// The request waits at most once as far as onQueued is concerned,
	// however many of its keys it has to wait for; AcquireFunc calls the
	// hook in this goroutine.
	queued := false
	onceQueued := func() {
		if !queued && onQueued != nil {
			queued = true
			onQueued()
		}
	}
	turns := make([]queue.Turn, 0, len(keys))
	for _, k := range keys {
		wait := maxWait
		if maxWait > 0 {
			// At least a nanosecond: zero would mean no limit.
			wait = max(time.Until(deadline), time.Nanosecond)
		}
		t, r, err := z.table.AcquireFunc(ctx, k, mode, wait, onceQueued)
		res.Queued = res.Queued || r.Queued
		res.Ahead += r.Ahead
		if err != nil {
			for _, held := range turns {
				held.Release()
			}
			z.keying.leave(epoch, stripe.index)
			return sessionTurn{}, key, res, err
		}
		turns = append(turns, t)
	}
	// Leases too are taken in key order, by every instance alike.
	if turn.leases, err = z.holdCluster(ctx, keys, deadline); err != nil {
		for _, held := range turns {
			held.Release()
		}
		z.keying.leave(epoch, stripe.index)
		return sessionTurn{}, key, res, err
	}
	turn.turn, turn.more = turns[0], turns[1:]
	return turn, key, res, nil
}

// sessionName names the session of id as ServeHTTP and the admin API do:
// the hash of its lineage's queue key under the pattern in force.
func (z *zone) sessionName(id string) string {
	root, pin := z.lineages.Resolve(id)
	defer pin.Release()
	return idgen.Hash(z.keying.epochs.Load().current.pattern.Key(root))
}

// busy reports whether requests hold or wait on the queue of the lineage
// rooted at root, under any pattern still in use.
func (z *zone) busy(root string) bool {
	epochs := z.keying.epochs.Load()
	if z.table.Busy(epochs.current.pattern.Key(root)) {
		return true
	}
	for _, e := range epochs.older {
		if z.table.Busy(e.pattern.Key(root)) {
			return true
		}
	}
	return false
}
