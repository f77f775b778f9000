package caddymodule

import (
	"hash/maphash"
	"net/http"
	"sort"
	"sync/atomic"
	"time"
)

// A zone counts every request several times: its outcome, its wait, and
// itself while it runs. Counters that every request of a zone updates, on
// every core, make their cache lines travel between the cores on each
// update: with two cores serving queued requests of unrelated sessions,
// those updates (about ten atomic operations on a few lines, Prometheus's
// among them) cost about a third of the handler's time. So a zone keeps its
// per-request counts in stripes, each on cache lines of its own; a request
// updates one stripe, chosen by its connection, and readers (the metrics
// collector, the admin API) add the stripes up. The requests of one
// HTTP/1.1 connection are served one after another by one goroutine, so
// they keep using one stripe, mostly from one core.
const stripeCount = 32 // a power of two

// stripeSeed keys the hash that spreads connections over stripes.
var stripeSeed = maphash.MakeSeed()

// stripeIndex returns the stripe of r's connection.
func stripeIndex(r *http.Request) int {
	return int(maphash.String(stripeSeed, r.RemoteAddr) & (stripeCount - 1))
}

// waitBuckets are the upper bounds of caddy_session_queue_wait_seconds.
var waitBuckets = [...]float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// zoneStripe is one stripe of a zone's per-request counts.
type zoneStripe struct {
	// index is the stripe's place among its zone's.
	index int
	// running counts the requests inside a handler of the zone.
	running atomic.Int64
	// requests counts requests by mode and result.
	requests [modeCount][resultCount]atomic.Uint64
	// inFlight counts requests past the queue and not yet finished.
	inFlight [modeCount]atomic.Int64
	// waits counts waits by mode and wait_seconds bucket, the last one
	// +Inf; waitNanos adds them up.
	waits     [modeCount][len(waitBuckets) + 1]atomic.Uint64
	waitNanos [modeCount]atomic.Uint64
	// Keep the next stripe's first counters off this one's last line.
	_ [64]byte
}

// count records one request's outcome.
func (s *zoneStripe) count(mode, result int) { s.requests[mode][result].Add(1) }

// observeWait records how long a request of mode waited for its turn.
func (s *zoneStripe) observeWait(mode int, waited time.Duration) {
	bucket := 0
	if waited > 0 {
		// The first bound at or above the wait, as Prometheus buckets it.
		bucket = sort.SearchFloat64s(waitBuckets[:], waited.Seconds())
	}
	s.waits[mode][bucket].Add(1)
	s.waitNanos[mode].Add(uint64(waited))
}

// zoneCounts are a zone's counts, the stripes added up.
type zoneCounts struct {
	requests  [modeCount][resultCount]uint64
	inFlight  [modeCount]int64
	waits     [modeCount][len(waitBuckets) + 1]uint64
	waitNanos [modeCount]uint64
}

// counts adds up the zone's stripes. Each counter is read atomically, but
// not all at one instant: a request counted meanwhile may show in one
// counter and not yet in another, as with separate Prometheus series.
func (z *zone) counts() zoneCounts {
	var c zoneCounts
	for i := range z.stripes {
		s := &z.stripes[i]
		for mode := range modeCount {
			for result := range resultCount {
				c.requests[mode][result] += s.requests[mode][result].Load()
			}
			c.inFlight[mode] += s.inFlight[mode].Load()
			for bucket := range s.waits[mode] {
				c.waits[mode][bucket] += s.waits[mode][bucket].Load()
			}
			c.waitNanos[mode] += s.waitNanos[mode].Load()
		}
	}
	return c
}
