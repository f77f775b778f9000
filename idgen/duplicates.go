package idgen

import (
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
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
// Bounds and privacy: it keeps up to about capacity IDs, least recently
// seen first out, each under a 64-bit keyed hash (hash/maphash, random
// seed per process), never the raw ID. An ID pushed out by capacity newer
// ones is not compared any more: a flood of made-up IDs can hide a
// duplicate, never invent one; only two IDs sharing a 64-bit hash can (at a
// million IDs tracked, a chance of about 1 in 10^13 per issued ID).
//
// Concurrency contract: safe for concurrent use. IDs are spread over
// independently locked shards by their hash, so requests of unrelated
// sessions rarely contend; each call holds one shard's lock for a map
// lookup and an insert.
type DuplicateTracker struct {
	window atomic.Int64 // a time.Duration; see SetWindow
	seed   maphash.Seed
	shards [trackerShards]trackerShard
}

const trackerShards = 64

type trackerShard struct {
	mu   sync.Mutex
	seen *simplelru.LRU[uint64, sighting]
	_    [48]byte // keep neighbouring shards' mutexes off one cache line
}

// sighting is the last time an ID was seen, and by whom.
type sighting struct {
	client string
	at     time.Time
	issued bool
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
	for i := range t.shards {
		// No eviction callback is needed: a sighting pushed out is simply
		// forgotten. NewLRU fails only for a size below 1.
		t.shards[i].seen, _ = simplelru.NewLRU[uint64, sighting](perShard, nil)
	}
	return t, nil
}

// Presented records that client sent a request carrying id (before any
// forwarding rewrite), at time now. Call it for every request whose ID
// passed Validate, except one minted here.
func (t *DuplicateTracker) Presented(id, client string, now time.Time) {
	key, s := t.shard(id)
	s.mu.Lock()
	s.seen.Add(key, sighting{client: client, at: now})
	s.mu.Unlock()
}

// Issued records that a response set the session cookie to id for a
// request from client that was not sent upstream with id, at time now, and
// reports a duplicate when another client presented or was issued id
// within the window. Call it for IDs the backend issues, including the new
// IDs of regenerations, before the response headers are passed on; an ID
// minted here needs no check.
func (t *DuplicateTracker) Issued(id, client string, now time.Time) (dup Duplicate, found bool) {
	key, s := t.shard(id)
	s.mu.Lock()
	before, seen := s.seen.Peek(key)
	s.seen.Add(key, sighting{client: client, at: now, issued: true})
	s.mu.Unlock()
	if !seen || before.client == client || now.Sub(before.at) > time.Duration(t.window.Load()) {
		return Duplicate{}, false
	}
	return Duplicate{
		Hash:         Hash(id),
		FirstClient:  before.client,
		FirstSeen:    before.at,
		FirstIssued:  before.issued,
		SecondClient: client,
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
	s.seen.Add(key, sighting{client: dup.FirstClient, at: dup.FirstSeen, issued: dup.FirstIssued})
	s.mu.Unlock()
}

func (t *DuplicateTracker) shard(id string) (uint64, *trackerShard) {
	key := maphash.String(t.seed, id)
	return key, &t.shards[key%trackerShards]
}
