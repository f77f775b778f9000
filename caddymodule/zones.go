package caddymodule

import (
	"fmt"
	"net/http"
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
	// keying derives queue keys from session IDs, by the key_pattern in
	// force and by those of requests still in flight from before a reload.
	keying keying
	// cluster is cluster mode's coordinator, when the zone has one.
	cluster zoneCluster
	// clusterAtStart: the config that made the zone wants cluster mode,
	// which takes effect only when that config starts (see claim), while
	// Caddy may start the http app, and serve, before this one. started is
	// closed by the first claim, or by Destruct.
	clusterAtStart bool
	started        chan struct{}
	startedOnce    sync.Once
	// stripes hold the per-request counts (see zoneStripe); the rarer
	// events are counted here.
	stripes       [stripeCount]zoneStripe
	holdExpired   atomic.Uint64
	regenerations atomic.Uint64
	duplicates    atomic.Uint64
	unqueued      unqueuedCounts

	// closed is set once the zone has been destructed. Caddy cleans up the
	// handlers of a stopped config while their requests may still run, so
	// the zone's cluster series are dropped only when both have happened.
	closed atomic.Bool
	forget sync.Once

	// owner is the App of the running config whose settings are in force;
	// successor, that of a config started to replace it, whose settings
	// take effect when owner stops. See claim and withdraw.
	handoverMu        sync.Mutex
	owner, successor  *App
	successorSettings zoneSettings
}

// enter and leave bracket every request through a handler of the zone;
// enter returns the stripe that leave and the request's counts use.
func (z *zone) enter(r *http.Request) *zoneStripe {
	s := &z.stripes[stripeIndex(r)]
	s.running.Add(1)
	return s
}

func (z *zone) leave(s *zoneStripe) {
	s.running.Add(-1)
	// Destruct sets closed before it looks at the stripes, and a request
	// counts itself out before it looks at closed: whichever comes second
	// sees the zone both closed and idle.
	if z.closed.Load() && z.idle() {
		z.forgetMetrics()
	}
}

// idle reports whether no request is inside a handler of the zone.
func (z *zone) idle() bool {
	var running int64
	for i := range z.stripes {
		running += z.stripes[i].running.Load()
	}
	return running == 0
}

// forgetMetrics drops the zone's cluster series, unless a new config has
// already brought the zone back under the same name: the series are then
// its. (Its other series are read off the zones in use at each scrape.)
func (z *zone) forgetMetrics() {
	z.forget.Do(func() {
		if _, reused := zones.References(z.name); !reused {
			deleteClusterMetrics(z.name)
		}
	})
}

// Destruct runs when the last config using the zone stops (not on a reload
// that keeps the zone): requests still waiting are turned away at once with
// 503 instead of waiting out max_wait, while requests holding a turn finish
// within Caddy's grace period.
func (z *zone) Destruct() error {
	z.table.Close()
	z.closeCluster()
	z.closed.Store(true)
	z.startedOnce.Do(func() { close(z.started) })
	if z.idle() {
		z.forgetMetrics()
	}
	return nil
}

// How many IDs a zone remembers: regeneration links (more while their
// sessions are busy; about 215 bytes per ID, 21 MB when full) and IDs seen,
// for duplicate detection (64 bytes each, 12.8 MB when full, in tables without
// pointers; see BENCHMARKS.md).
const (
	maxLinkedIDs  = 100_000
	maxTrackedIDs = 200_000
)

// zoneSettings are the settings a zone takes from the handlers using it.
// The handlers of one config must agree on them (see App.join); across
// reloads, those of the newest running config are in force (see App).
type zoneSettings struct {
	limits      queue.Limits
	keyPattern  idgen.KeyPattern
	trackWindow time.Duration
	// cluster is nil without cluster mode.
	cluster *clusterSettings
}

// differ describes the first setting in which s, a handler's, differs from
// other, those of another handler of the zone in the same config; "" when
// they agree.
func (s zoneSettings) differ(other zoneSettings) string {
	switch {
	case s.limits.MaxReaders != other.limits.MaxReaders:
		return fmt.Sprintf("max_readers %d here but %d", s.limits.MaxReaders, other.limits.MaxReaders)
	case s.limits.MaxWaiting != other.limits.MaxWaiting:
		return fmt.Sprintf("max_waiting %d here but %d", s.limits.MaxWaiting, other.limits.MaxWaiting)
	case s.keyPattern.String() != other.keyPattern.String():
		return fmt.Sprintf("key_pattern %q here but %q", s.keyPattern.String(), other.keyPattern.String())
	case s.trackWindow != other.trackWindow:
		return fmt.Sprintf("track_window %s here but %s", s.trackWindow, other.trackWindow)
	case (s.cluster == nil) != (other.cluster == nil) || s.cluster != nil && *s.cluster != *other.cluster:
		return "cluster differs"
	}
	return ""
}

// acquireZone returns the named zone, creating it with the given settings
// on first use. The settings of a zone that exists already are not
// touched: a config's settings take effect only once it runs (see App).
func acquireZone(name string, settings zoneSettings) (*zone, error) {
	v, _, err := zones.LoadOrNew(name, func() (caddy.Destructor, error) {
		z := &zone{name: name, table: queue.New(settings.limits),
			clusterAtStart: settings.cluster != nil, started: make(chan struct{})}
		z.cluster.logger = caddy.Log().Named("http.handlers.session_queue")
		z.cluster.metrics = newClusterMetrics(name, z.cluster.logger)
		for i := range z.stripes {
			z.stripes[i].index = i
		}
		z.keying.setPattern(settings.keyPattern)
		var err error
		z.lineages, err = idgen.NewLineages(maxLinkedIDs, z.busy)
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
	return v.(*zone), nil
}

// apply puts settings in force; requests already queued stay queued.
func (z *zone) apply(settings zoneSettings) {
	z.table.SetLimits(settings.limits)
	z.keying.setPattern(settings.keyPattern)
	z.tracker.SetWindow(settings.trackWindow)
	z.setCluster(settings.cluster)
}

// claim is called by the App of a config that starts: when no running
// config owns the zone, app becomes its owner and its settings take effect
// at once; otherwise app is the owner's successor, whose settings wait for
// the owner to stop. Caddy stops the old config only once the new one is
// running, so a config that fails to start never changes the zone.
func (z *zone) claim(app *App, settings zoneSettings) {
	z.handoverMu.Lock()
	defer z.handoverMu.Unlock()
	if z.owner == nil {
		z.owner = app
		z.apply(settings)
		z.startedOnce.Do(func() { close(z.started) })
		return
	}
	z.successor, z.successorSettings = app, settings
}

// withdraw ends app's claim, when its config stops or is abandoned: an
// owner hands the zone to its successor, whose settings take effect; a
// successor (a config that failed to start) is forgotten with its settings.
// Withdrawing twice, or without a claim, does nothing.
func (z *zone) withdraw(app *App) {
	z.handoverMu.Lock()
	defer z.handoverMu.Unlock()
	switch app {
	case z.owner:
		z.owner, z.successor = z.successor, nil
		if z.owner != nil {
			z.apply(z.successorSettings)
		}
	case z.successor:
		z.successor = nil
	}
}

// releaseZone gives back one reference taken by acquireZone.
func releaseZone(name string) {
	_, _ = zones.Delete(name)
}
