package caddymodule

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessionqueue/caddy-session-queue/idgen"
	"github.com/sessionqueue/caddy-session-queue/queue"
)

// zones holds the zones by name. It is package state, outside any one
// config, so that during a reload the old and the new handlers of a zone
// share the same queues: a request held or queued under the old config
// keeps its place, and no second writer of its session is let through by
// the new one. A zone is destructed when the last config using it stops.
var zones = caddy.NewUsagePool()

// zone is the shared state of one zone.
type zone struct {
	name  string
	table *queue.Table
	// lineages links regenerated IDs to the ID their session started
	// with, whose queue they share; tracker remembers which client used
	// which ID, to spot duplicates.
	lineages *idgen.Lineages
	tracker  *idgen.DuplicateTracker
	// keyPattern is the key_pattern of the config loaded last; lineages
	// need it to find a root's queue.
	keyPattern atomic.Pointer[idgen.KeyPattern]
	metrics    zoneMetrics
	// counts mirror requests_total for the admin API.
	counts        [modeCount][resultCount]atomic.Uint64
	holdExpired   atomic.Uint64
	regenerations atomic.Uint64
	duplicates    atomic.Uint64
	unqueued      unqueuedCounts

	// running counts the requests inside a handler of this zone, plus
	// closedBit once the zone has been destructed. Caddy cleans up the
	// handlers of a stopped config while their requests may still run, so
	// the zone's metric series are dropped only when both have happened.
	running atomic.Int64
	forget  sync.Once
}

const closedBit = 1 << 62

// enter and leave bracket every request through a handler of the zone.
func (z *zone) enter() { z.running.Add(1) }

func (z *zone) leave() {
	if z.running.Add(-1) == closedBit {
		z.forgetMetrics()
	}
}

// forgetMetrics drops the zone's series, unless a new config has already
// brought the zone back under the same name: the series are then its.
func (z *zone) forgetMetrics() {
	z.forget.Do(func() {
		if _, reused := zones.References(z.name); !reused {
			deleteZoneMetrics(z.name)
		}
	})
}

// Destruct runs when the last config using the zone stops (not on a reload
// that keeps the zone): requests still waiting are turned away at once with
// 503 instead of waiting out max_wait, while requests holding a turn finish
// within Caddy's grace period.
func (z *zone) Destruct() error {
	z.table.Close()
	if z.running.Add(closedBit) == closedBit {
		z.forgetMetrics()
	}
	return nil
}

// count records one request's outcome.
func (z *zone) count(mode, result int) {
	z.counts[mode][result].Add(1)
	z.metrics.requests[mode][result].Inc()
}

// How many IDs a zone remembers: regeneration links (more while their
// sessions are busy; about 190 bytes each, 19 MB when full) and IDs seen,
// for duplicate detection (about 135 bytes each, 27 MB when full).
const (
	maxLinkedIDs  = 100_000
	maxTrackedIDs = 200_000
)

// zoneSettings are the settings a zone takes from the handlers using it;
// those of the config loaded last win.
type zoneSettings struct {
	limits      queue.Limits
	keyPattern  idgen.KeyPattern
	trackWindow time.Duration
}

// acquireZone returns the named zone, creating it on first use, and applies
// the settings to it; requests already queued stay queued.
func acquireZone(name string, settings zoneSettings) (*zone, error) {
	v, loaded, err := zones.LoadOrNew(name, func() (caddy.Destructor, error) {
		z := &zone{name: name, table: queue.New(settings.limits), metrics: newZoneMetrics(name)}
		z.keyPattern.Store(&settings.keyPattern)
		var err error
		z.lineages, err = idgen.NewLineages(maxLinkedIDs, func(root string) bool {
			return z.table.Busy(z.queueKey(root))
		})
		if err != nil {
			return nil, err
		}
		z.tracker, err = idgen.NewDuplicateTracker(maxTrackedIDs, settings.trackWindow)
		if err != nil {
			return nil, err
		}
		return z, nil
	})
	if err != nil {
		return nil, err
	}
	z := v.(*zone)
	if loaded {
		z.table.SetLimits(settings.limits)
		z.keyPattern.Store(&settings.keyPattern)
		z.tracker.SetWindow(settings.trackWindow)
	}
	return z, nil
}

// queueKey is the key of the queue that the requests of a lineage rooted
// at root wait in.
func (z *zone) queueKey(root string) string { return z.keyPattern.Load().Key(root) }

// releaseZone gives back one reference taken by acquireZone.
func releaseZone(name string) {
	_, _ = zones.Delete(name)
}
