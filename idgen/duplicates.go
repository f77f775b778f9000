package idgen

import (
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// DuplicateTracker notices a backend handing out a session ID that another
// client already has: two users merged into one session by a badly seeded
// random generator (forked workers sharing a seed, uniqid() under load), or
// a session ID shared through a URL.
//
// It remembers, for each ID lately presented by a request or issued in a
// response, the last client address that did so. An ID issued to a client
// (a Set-Cookie with a value the request did not carry) that another
// client presented or was issued within the window is a duplicate.
//
// Clients are told apart by the address the caller passes, the client IP.
// Clients behind one NAT or proxy share an address, so a duplicate between
// them goes unnoticed; a client whose address changes (a phone moving
// between networks) looks like two, so a backend re-sending its ID to a
// request the proxy saw carry none (an ID in a POST body, say) while the
// client moved is reported although nobody else has it.
//
// Bounds and privacy: it keeps up to capacity IDs (rounded up to a
// multiple of 1,024), each under a 64-bit keyed hash (hash/maphash,
// random seed per process), never the raw ID. IDs live in sets of 16 by
// their hash; once the tracker is full, a new ID pushes out the least
// recently seen ID of its set. So an ID is forgotten after about capacity
// newer IDs: after fewer than half as many for fewer than one ID in a
// hundred, since the newer IDs spread over the sets at random. An ID
// pushed out is not compared any more: a flood of made-up IDs can hide a
// duplicate, never invent one; only two IDs sharing a 64-bit hash can (at a
// million IDs tracked, a chance of about 1 in 10^13 per issued ID).
//
// Memory: 64 bytes per ID, in tables that hold no pointers, so that the
// garbage collector never scans them: a full tracker of 200,000 IDs
// (unique IDs on every request, a flood or a crawler) would otherwise be
// hundreds of thousands of objects for every collection cycle to trace.
// Client addresses are kept in the table, the first 38 bytes of one longer
// than 46 (only an IPv6 address with a zone is) beside a hash of the rest.
//
// Concurrency contract: safe for concurrent use. IDs are spread over
// independently locked shards by their hash, so requests of unrelated
// sessions rarely contend; each call holds one shard's lock while it looks
// through one set of 16.
type DuplicateTracker struct {
	window atomic.Int64 // a time.Duration; see SetWindow
	seed   maphash.Seed
	// ways is how many IDs share a set: setWays, or fewer for a tracker
	// too small to give every shard one full set.
	ways, maxSets int
	shards        [trackerShards]trackerShard
}

const (
	trackerShards = 64
	// setWays is the number of IDs in a set. More ways bring the age at
	// which an ID is pushed out closer to the LRU's (capacity newer IDs)
	// at the cost of a longer look through the set.
	setWays = 16
)

type trackerShard struct {
	mu sync.Mutex
	// keys, ats and clients are the shard's sets, ways entries each, an
	// ID's hash and its sighting: key 0 is an empty entry. Apart, so that
	// looking through a set for an ID, and choosing the one to push out,
	// reads its keys and times alone, not the clients' 48 bytes each:
	// under a flood of new IDs every request does both, in a table far
	// larger than the CPU's caches. They start small and double, up to maxSets sets, when an ID
	// finds its set full before the shard is at its size.
	keys    []uint64
	ats     []int64
	clients []clientAddress
	_       [48]byte // keep neighbouring shards' mutexes off one cache line
}

// sighting is the last time an ID was seen, and by whom, without a
// pointer (see DuplicateTracker).
type sighting struct {
	at     int64 // Unix nanoseconds
	client clientAddress
}

func (s *trackerShard) sighting(i int) sighting { return sighting{at: s.ats[i], client: s.clients[i]} }

func (s *trackerShard) record(i int, seen sighting) { s.ats[i], s.clients[i] = seen.at, seen.client }

// clientAddress is a client's address held in place; an address longer
// than maxInlineClient is held as its first truncatedClient bytes and a
// keyed hash of the whole, which compares as the whole does.
type clientAddress struct {
	n      uint8 // bytes used in text; longClient when hashed
	issued bool
	text   [maxInlineClient]byte
}

const (
	maxInlineClient = 46 // the longest IPv6 address is 45 characters
	truncatedClient = maxInlineClient - 8
	longClient      = 0xff
)

func (t *DuplicateTracker) makeClientAddress(client string, issued bool) clientAddress {
	c := clientAddress{issued: issued}
	if len(client) <= maxInlineClient {
		c.n = uint8(len(client))
		copy(c.text[:], client)
		return c
	}
	c.n = longClient
	copy(c.text[:truncatedClient], client)
	h := maphash.String(t.seed, client)
	for i := range 8 {
		c.text[truncatedClient+i] = byte(h >> (8 * i))
	}
	return c
}

// sameClient reports whether a and b are one client's address, whatever
// their issued flags.
func sameClient(a, b clientAddress) bool { return a.n == b.n && a.text == b.text }

func (c *clientAddress) String() string {
	if c.n == longClient {
		return string(c.text[:truncatedClient]) + "…"
	}
	return string(c.text[:c.n])
}

// Duplicate describes an ID issued to one client while another had it.
type Duplicate struct {
	// Hash is the ID's keyed short hash (see Hash), as logged elsewhere.
	Hash string
	// FirstClient is the address that presented or was issued the ID
	// before, at FirstSeen; FirstIssued tells which of the two.
	FirstClient string
	FirstSeen   time.Time
	FirstIssued bool
	// SecondClient is the address it has just been issued to.
	SecondClient string

	// first is what Withheld puts back.
	first sighting
}

// NewDuplicateTracker returns a tracker remembering about capacity IDs for
// window (track_window).
func NewDuplicateTracker(capacity int, window time.Duration) (*DuplicateTracker, error) {
	if capacity < 1 {
		return nil, errors.New("duplicate tracker capacity must be at least 1")
	}
	if window <= 0 {
		return nil, errors.New("duplicate tracking window must be positive")
	}
	t := &DuplicateTracker{seed: maphash.MakeSeed()}
	t.window.Store(int64(window))
	perShard := (capacity + trackerShards - 1) / trackerShards
	t.ways = min(perShard, setWays)
	t.maxSets = (perShard + t.ways - 1) / t.ways
	return t, nil
}

// Presented records that client sent a request carrying id (before any
// forwarding rewrite), at time now, and reports whether the tracker knew
// id already: whether a request or a response carried it before, unless
// so long ago, or so many IDs ago, that it has been forgotten. Call it for
// every request whose ID passed Validate, except one minted here.
func (t *DuplicateTracker) Presented(id, client string, now time.Time) (known bool) {
	key, s := t.shard(id)
	seen := sighting{at: now.UnixNano(), client: t.makeClientAddress(client, false)}
	s.mu.Lock()
	i, known := t.entry(s, key)
	s.record(i, seen)
	s.mu.Unlock()
	return known
}

// Issued records that a response set the session cookie to id for a
// request from client that was not sent upstream with id, at time now, and
// reports a duplicate when another client presented or was issued id
// within the window. Call it for IDs the backend issues, including the new
// IDs of regenerations, before the response headers are passed on; an ID
// minted here needs no check.
func (t *DuplicateTracker) Issued(id, client string, now time.Time) (dup Duplicate, found bool) {
	key, s := t.shard(id)
	seen := sighting{at: now.UnixNano(), client: t.makeClientAddress(client, true)}
	s.mu.Lock()
	i, known := t.entry(s, key)
	before := s.sighting(i)
	s.record(i, seen)
	s.mu.Unlock()
	if !known || sameClient(before.client, seen.client) ||
		now.Sub(time.Unix(0, before.at)) > time.Duration(t.window.Load()) {
		return Duplicate{}, false
	}
	return Duplicate{
		Hash:         Hash(id),
		FirstClient:  before.client.String(),
		FirstSeen:    time.Unix(0, before.at),
		FirstIssued:  before.client.issued,
		SecondClient: client,
		first:        before,
	}, true
}

// SetWindow changes track_window, for a config reload.
func (t *DuplicateTracker) SetWindow(window time.Duration) { t.window.Store(int64(window)) }

// Withheld undoes the record Issued made for a duplicate whose response was
// withheld (on_duplicate reject): the second client never received the ID,
// so the first one still has it, and issuing it to the second client again
// is still a duplicate.
func (t *DuplicateTracker) Withheld(id string, dup Duplicate) {
	key, s := t.shard(id)
	s.mu.Lock()
	i, _ := t.entry(s, key)
	s.record(i, dup.first)
	s.mu.Unlock()
}

func (t *DuplicateTracker) shard(id string) (uint64, *trackerShard) {
	key := maphash.String(t.seed, id)
	s := &t.shards[key%trackerShards]
	// 0 marks an empty entry; the hash that falls on it shares 1's entry.
	return max(key, 1), s
}

// entry returns the entry of key in its shard s, locked, and whether it
// is one key had: else an empty one, or, when key's set is full and the
// shard at its size, that of the set's least recently seen ID, which is
// forgotten. The caller records the sighting.
func (t *DuplicateTracker) entry(s *trackerShard, key uint64) (i int, known bool) {
	for {
		if len(s.keys) > 0 {
			first := t.set(len(s.keys)/t.ways, key) * t.ways
			keys, ats := s.keys[first:first+t.ways], s.ats[first:first+t.ways]
			// One pass reads the set's keys and times together, so that
			// the CPU fetches both from memory at once: under a flood of
			// new IDs neither is in its caches, and a look through the
			// keys first, then the times, waited for memory twice.
			free, oldest := -1, 0
			for i, k := range keys {
				if k == key {
					return first + i, true
				}
				if k == 0 && free < 0 {
					free = i
				}
				if ats[i] < ats[oldest] {
					oldest = i
				}
			}
			if free >= 0 {
				keys[free] = key
				return first + free, false
			}
			if len(s.keys) == t.maxSets*t.ways {
				keys[oldest] = key
				return first + oldest, false
			}
		}
		t.grow(s)
	}
}

// set is the set of key among sets: by the hash's high bits (the shard
// took the low ones), scaled to the number of sets, so that when sets
// double, set i's entries go to sets 2i and 2i+1, and nothing overflows.
func (t *DuplicateTracker) set(sets int, key uint64) int {
	return int((key >> 32) * uint64(sets) >> 32)
}

// grow doubles the shard's sets, up to maxSets. A table grown to maxSets
// from more than half as many sets may find more IDs for a set than it
// holds: the least recently seen are forgotten, as they would be next.
func (t *DuplicateTracker) grow(s *trackerShard) {
	sets := min(max(2*len(s.keys)/t.ways, 1), t.maxSets)
	old := trackerShard{keys: s.keys, ats: s.ats, clients: s.clients}
	s.keys = make([]uint64, sets*t.ways)
	s.ats = make([]int64, sets*t.ways)
	s.clients = make([]clientAddress, sets*t.ways)
	for i, key := range old.keys {
		if key != 0 {
			j, _ := t.entry(s, key)
			s.record(j, old.sighting(i))
		}
	}
}

// len returns the number of IDs remembered.
func (t *DuplicateTracker) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, k := range s.keys {
			if k != 0 {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}
