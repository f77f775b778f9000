package caddymodule

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/sessionqueue/caddy-session-queue/queue"
)

// zones holds the queue tables by zone name. It is package state, outside
// any one config, so that during a reload the old and the new handlers of a
// zone share the same queues: a request held or queued under the old config
// keeps its place, and no second writer of its session is let through by
// the new one. A zone is freed when the last handler using it is cleaned up.
var zones = caddy.NewUsagePool()

// zone is the shared state of one zone.
type zone struct {
	table *queue.Table
}

// Destruct is called when the last handler of the zone is cleaned up, by
// which time no request holds or waits in it.
func (*zone) Destruct() error { return nil }

// acquireZone returns the named zone, creating it on first use, and applies
// limits to it: the limits of the config loaded last win, and requests
// already queued stay queued.
func acquireZone(name string, limits queue.Limits) *zone {
	v, loaded, _ := zones.LoadOrNew(name, func() (caddy.Destructor, error) {
		return &zone{table: queue.New(limits)}, nil // cannot fail
	})
	z := v.(*zone)
	if loaded {
		z.table.SetLimits(limits)
	}
	return z
}

// releaseZone gives back one reference taken by acquireZone.
func releaseZone(name string) {
	_, _ = zones.Delete(name)
}
