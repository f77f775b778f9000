package idgen

import (
	"crypto/subtle"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Lineages remembers session ID regenerations, so that the IDs a session
// has had share one queue and a client's stale ID can be forwarded to the
// one that replaced it.
//
// A lineage is the set of IDs linked by regenerations: a response that sets
// ID B to a request that carried ID A links A to B. All IDs of a lineage
// resolve to its root, the ID it started from, and the caller queues every
// request under its root: the queue key must not change while requests are
// queued under it, and those that were queued before the regeneration are
// queued under the old ID. Each regenerated ID also remembers which ID
// replaced it, when, and the binding of the browser whose request
// regenerated it, for Forward.
//
// A binding is an opaque secret that the caller gave that browser (a
// random token in a cookie of its own); Forward hands the new ID only to
// requests presenting the same binding. It must be something a third party
// holding the old ID can neither plant nor read: a client address is not,
// as clients behind one NAT or proxy share it. Bindings are compared in
// constant time, and the empty binding matches nothing.
//
// Bounds: the links live in an LRU of capacity IDs, least recently linked
// first out. An ID whose lineage is busy (its root's queue has holders or
// waiters, as reported by the busy function, or a Pin is held on it) is
// never forgotten: when it is pushed out of the LRU it moves to a side
// table, a few entries of which are checked again at each Link and dropped
// once their lineage is idle. The side table is thus bounded by the busy
// queues, that is by the requests in flight, times maxLineageMembers, the
// most IDs one lineage keeps (a session regenerating without pause
// forgets its oldest IDs).
//
// Concurrency contract: every method is safe for concurrent use. Resolve
// and Forward, called on every request, read-lock one of many locks, chosen
// by the ID, so that the requests of different sessions share no lock (and
// none at all while nothing is linked); Link and Unlink, called on the
// responses that change the session cookie, lock them all. The busy
// function is called with the locks held, so it must be quick and must not
// call back into the Lineages. IDs and bindings are
// kept raw, in memory only; none is logged or returned anywhere but to the
// caller.
type Lineages struct {
	busy func(root string) bool

	// mu holds the locks; seed spreads the IDs over them.
	mu       readerShardedLock
	capacity int
	// recent maps each remembered ID to its member entry.
	recent *simplelru.LRU[string, *member]
	// kept holds the members pushed out of recent while their lineage was
	// busy.
	kept map[string]*member
	// remembered is len(recent)+len(kept), written under mu. While it is
	// 0 (a zone whose backend never regenerated an ID) Resolve and Forward
	// have nothing to find, and skip the lock that every session's
	// requests would otherwise share. A Link is complete before the
	// response that carries the new ID goes out, so no request carrying it
	// can read remembered before the Link wrote it.
	remembered atomic.Int64
}

// maxLineageMembers is the most IDs one lineage keeps; a chain of
// regenerations longer than that forgets its oldest IDs, whose clients
// have long moved on.
const maxLineageMembers = 16

// keptChecksPerLink is how many entries of the side table each Link checks
// for a lineage gone idle. Each Link adds at most two, so the idle part of
// the side table shrinks faster than it can grow.
const keptChecksPerLink = 4

type lineage struct {
	// root is the first ID of the lineage, the key its requests queue
	// under; it stays the root even once that ID itself is forgotten.
	root string
	// members are the IDs remembered, in the order they (last) joined.
	// Invariant: a member's next is nil or a member that joined after it,
	// so following next always ends, within len(members) steps.
	members []*member
	// pins counts the Pins held on the lineage.
	pins atomic.Int32
}

type member struct {
	id      string
	lineage *lineage
	// next is the ID this one was regenerated into, nil while it has not
	// been, or once a logout ended the link. replacedAt and replacedFor
	// are when that happened and the binding of the browser whose request
	// regenerated it.
	next        *member
	replacedAt  time.Time
	replacedFor string
}

// sameBinding reports whether a request presenting binding comes from the
// browser that holds want. The comparison takes the same time whatever the
// bytes, so that timing it reveals nothing of want.
func sameBinding(binding, want string) bool {
	return binding != "" && subtle.ConstantTimeCompare([]byte(binding), []byte(want)) == 1
}

// readerShardedLock is a readers/writer lock whose readers lock one of
// lineageLocks shards, each on a cache line of its own, and whose writers
// lock every shard: read-mostly use (every request reads, a regeneration
// writes) then costs readers of different IDs no shared cache line.
type readerShardedLock struct {
	seed   maphash.Seed
	shards [lineageLocks]struct {
		sync.RWMutex
		_ [40]byte
	}
}

const lineageLocks = 64

// rlock read-locks the shard of id and returns it for RUnlock.
func (m *readerShardedLock) rlock(id string) *sync.RWMutex {
	s := &m.shards[maphash.String(m.seed, id)%lineageLocks].RWMutex
	s.RLock()
	return s
}

// Lock locks every shard, always in the same order.
func (m *readerShardedLock) Lock() {
	for i := range m.shards {
		m.shards[i].Lock()
	}
}

func (m *readerShardedLock) Unlock() {
	for i := range m.shards {
		m.shards[i].Unlock()
	}
}

// NewLineages returns an empty table remembering up to capacity IDs (more
// while their lineages are busy). busy reports whether requests hold or
// wait in the queue of a lineage's root ID; the caller maps the root to its
// queue key as it does for Acquire.
func NewLineages(capacity int, busy func(root string) bool) (*Lineages, error) {
	if capacity < 1 {
		return nil, errors.New("lineage capacity must be at least 1")
	}
	if busy == nil {
		return nil, errors.New("lineages need a busy function")
	}
	// No eviction callback: evictions are made by hand in makeRoom, which
	// decides whether an entry goes to kept.
	recent, err := simplelru.NewLRU[string, *member](capacity, nil)
	if err != nil {
		return nil, err
	}
	return &Lineages{
		mu:       readerShardedLock{seed: maphash.MakeSeed()},
		busy:     busy,
		capacity: capacity,
		recent:   recent,
		kept:     make(map[string]*member),
	}, nil
}

// Pin keeps a lineage from being forgotten while a request is between
// Resolve and its queue's Acquire, when the queue may not look busy yet.
// Release it exactly once, after Acquire has returned (whatever it
// returned), or at the end of the request. The zero Pin holds nothing and
// its Release does nothing.
type Pin struct {
	lineage *lineage
}

// Release gives the pin back.
func (p Pin) Release() {
	if p.lineage != nil {
		p.lineage.pins.Add(-1)
	}
}

// Resolve returns the root of id's lineage, the ID to derive the queue key
// from, or id itself when it has none. When the root differs from id, the
// lineage is pinned until pin is released: without the pin, the lineage
// could be forgotten before the request is queued, and another request
// carrying id would then queue under id itself, beside this one.
func (l *Lineages) Resolve(id string) (root string, pin Pin) {
	if l.remembered.Load() == 0 {
		return id, Pin{}
	}
	defer l.mu.rlock(id).RUnlock()
	m := l.lookup(id)
	if m == nil || m.lineage.root == id {
		return id, Pin{}
	}
	m.lineage.pins.Add(1)
	return m.lineage.root, Pin{m.lineage}
}

// Forward returns the ID a request carrying id should be sent upstream
// with: the newest ID that id was regenerated into. ok is false, and the
// request keeps its own ID, unless
//   - id has been regenerated and no logout ended the link since,
//   - binding is that of the browser whose request regenerated it, so
//     that nobody else holding the old ID (a session fixation) is given
//     the new one, and
//   - the request arrived no later than grace (regenerate_grace) after the
//     regeneration. A request that arrived earlier was waiting when the
//     regeneration came back, and is forwarded however long it waited,
//     even with a grace of 0.
//
// Call it once the request's turn is granted, with arrived the time the
// request arrived. The chain is followed only through regenerations made
// for the same binding.
func (l *Lineages) Forward(id, binding string, arrived time.Time, grace time.Duration) (newID string, ok bool) {
	if l.remembered.Load() == 0 {
		return "", false
	}
	defer l.mu.rlock(id).RUnlock()
	m := l.lookup(id)
	if m == nil || m.next == nil || !sameBinding(binding, m.replacedFor) || arrived.Sub(m.replacedAt) > grace {
		return "", false
	}
	newest := m.next
	for range maxLineageMembers {
		if newest.next == nil || !sameBinding(binding, newest.replacedFor) {
			break
		}
		newest = newest.next
	}
	return newest.id, true
}

// Link records that a response set the session cookie to newID for a
// request that was sent upstream with oldID (after any Forward rewrite), at
// time now, for a request from the browser holding binding ("" when there
// is none; such a link is never forwarded). Call it before the response
// headers are passed on, so that no request carrying newID can arrive
// before the link exists. Both IDs must have passed Validate.
//
// newID joins oldID's lineage, or a new lineage rooted at oldID. When oldID
// was already regenerated for another browser, newID joins the lineage but
// oldID keeps forwarding to what it was first regenerated into: another
// browser does not take over its forwarding. Linking an ID again into the
// same lineage (a backend that hands back an older ID) makes it the newest.
//
// ok is false, and nothing changes, when the IDs are equal or newID already
// belongs to another lineage: a backend issuing an ID that another session
// has had is a duplicate (see DuplicateTracker), and merging the two
// lineages would let one session's requests overlap the other's.
func (l *Lineages) Link(oldID, newID, binding string, now time.Time) (ok bool) {
	if oldID == newID {
		return false
	}
	// Copies: the arguments are usually cut from a request's Cookie header
	// or a response's Set-Cookie, and a remembered substring would keep
	// the whole header alive (up to a MiB each) for as long as the link.
	oldID, newID, binding = strings.Clone(oldID), strings.Clone(newID), strings.Clone(binding)
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.count()
	l.checkKept()

	from, to := l.lookup(oldID), l.lookup(newID)
	switch {
	case from == nil && to != nil:
		return false
	case from == nil:
		lin := &lineage{root: oldID}
		from = &member{id: oldID, lineage: lin}
		lin.members = append(lin.members, from)
	case to != nil && to.lineage != from.lineage:
		return false
	}
	lin := from.lineage
	if to == nil {
		to = &member{id: newID, lineage: lin}
	} else {
		lin.removeMember(to)
		to.next = nil
	}
	lin.members = append(lin.members, to)
	if from.next == nil || sameBinding(binding, from.replacedFor) {
		from.next, from.replacedAt, from.replacedFor = to, now, binding
	}
	l.touch(from)
	l.touch(to)
	if len(lin.members) > maxLineageMembers {
		l.forget(lin.members[0])
	}
	return true
}

// Unlink ends the links of id's lineage, for a response that deleted the
// session cookie of a request sent upstream with id (a logout): no ID of
// the lineage is forwarded any more, and requests still waiting keep their
// own IDs. While the lineage is busy its IDs still resolve to its root, so
// that requests carrying them keep out of those running; an idle lineage
// is forgotten at once.
func (l *Lineages) Unlink(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.count()
	m := l.lookup(id)
	if m == nil {
		return
	}
	lin := m.lineage
	if !l.held(lin) {
		for _, x := range lin.members {
			l.recent.Remove(x.id)
			delete(l.kept, x.id)
		}
		lin.members = nil
		return
	}
	for _, x := range lin.members {
		x.next = nil
	}
}

// count updates remembered; call it with mu held, after every change.
func (l *Lineages) count() {
	l.remembered.Store(int64(l.recent.Len() + len(l.kept)))
}

// lookup returns id's member entry, or nil. It does not change the LRU
// order, so that it can run under the read lock.
func (l *Lineages) lookup(id string) *member {
	if m, ok := l.recent.Peek(id); ok {
		return m
	}
	return l.kept[id]
}

// held reports whether lin must not be forgotten.
func (l *Lineages) held(lin *lineage) bool {
	return lin.pins.Load() > 0 || l.busy(lin.root)
}

// touch makes m the most recently linked entry of recent.
func (l *Lineages) touch(m *member) {
	if _, ok := l.recent.Get(m.id); ok {
		return
	}
	delete(l.kept, m.id)
	l.makeRoom(m.lineage)
	l.recent.Add(m.id, m)
}

// makeRoom frees a place in recent, if it is full, by pushing out its least
// recently linked entry: to kept when its lineage is held or is protect
// (the one being linked, whose request holds its turn), else for good.
func (l *Lineages) makeRoom(protect *lineage) {
	if l.recent.Len() < l.capacity {
		return
	}
	id, m, _ := l.recent.RemoveOldest()
	if m.lineage == protect || l.held(m.lineage) {
		l.kept[id] = m
		return
	}
	l.forget(m)
}

// checkKept forgets a few entries of kept whose lineages have gone idle.
// Go's map iteration starts at a random place, so every entry gets checked
// in time.
func (l *Lineages) checkKept() {
	checked := 0
	for _, m := range l.kept {
		if checked == keptChecksPerLink {
			return
		}
		checked++
		if !l.held(m.lineage) {
			l.forget(m)
		}
	}
}

// forget removes m from the table and from its lineage. A member that was
// regenerated into m is pointed past it when the same browser made both
// regenerations, so that it still forwards to the newest ID; otherwise its
// link ends with m.
func (l *Lineages) forget(m *member) {
	l.recent.Remove(m.id)
	delete(l.kept, m.id)
	lin := m.lineage
	lin.removeMember(m)
	for _, x := range lin.members {
		if x.next != m {
			continue
		}
		if sameBinding(x.replacedFor, m.replacedFor) {
			x.next = m.next
		} else {
			x.next = nil
		}
	}
}

func (lin *lineage) removeMember(m *member) {
	for i, x := range lin.members {
		if x == m {
			lin.members = append(lin.members[:i], lin.members[i+1:]...)
			return
		}
	}
}
