package caddymodule

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The series of every zone are read off the zones in use when a registry
// is scraped (see zoneStripe for why requests do not update Prometheus
// series themselves). The collector is registered with the registry of
// every config that uses the handler: Caddy gives each config a fresh
// registry, and a zone's counts live on across reloads with the zone. A
// zone that no config uses any more drops out of them; one created again
// under the same name starts from zero, which Prometheus reads as a
// counter reset. Labels are zone, mode, result and reason only; a session
// never becomes a label.
var zoneSeries = zoneCollector{
	requests: prometheus.NewDesc("caddy_session_queue_requests_total",
		"Requests seen by session_queue, by how they got their turn.", []string{"zone", "mode", "result"}, nil),
	wait: prometheus.NewDesc("caddy_session_queue_wait_seconds",
		"Time requests waited for their session's turn.", []string{"zone", "mode"}, nil),
	inFlight: prometheus.NewDesc("caddy_session_queue_in_flight",
		"Requests past session_queue and not yet finished.", []string{"zone", "mode"}, nil),
	regenerations: prometheus.NewDesc("caddy_session_queue_regenerations_total",
		"Session ID regenerations followed.", []string{"zone"}, nil),
	duplicates: prometheus.NewDesc("caddy_session_queue_duplicates_total",
		"Session IDs issued to one client while another client used them.", []string{"zone"}, nil),
	unqueued: prometheus.NewDesc("caddy_session_queue_unqueued_total",
		"Requests carrying a session ID that could not be queued (too_long, bad_characters, undecryptable) and were passed on unserialized.", []string{"zone", "reason"}, nil),
	holdExpired: prometheus.NewDesc("caddy_session_queue_hold_expired_total",
		"Turns given up because a request held its session longer than max_hold.", []string{"zone"}, nil),
	waiting: prometheus.NewDesc("caddy_session_queue_waiting",
		"Requests waiting for their session's turn.", []string{"zone"}, nil),
	sessions: prometheus.NewDesc("caddy_session_queue_sessions",
		"Sessions with requests running or waiting.", []string{"zone"}, nil),
}

var collectors = []prometheus.Collector{zoneSeries}

// registerMetrics adds the collectors to a config's registry. Several
// handlers of one config register the same collectors; that is expected.
func registerMetrics(registry prometheus.Registerer) error {
	for _, c := range collectors {
		err := registry.Register(c)
		if are := (prometheus.AlreadyRegisteredError{}); err != nil && !(errors.As(err, &are) && are.ExistingCollector == c) {
			return err
		}
	}
	return nil
}

// zoneCollector reports the series of every zone in use.
type zoneCollector struct {
	requests, wait, inFlight, regenerations, duplicates, unqueued, holdExpired, waiting, sessions *prometheus.Desc
}

func (c zoneCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.wait, c.inFlight, c.regenerations, c.duplicates, c.unqueued, c.holdExpired, c.waiting, c.sessions} {
		ch <- d
	}
}

func (c zoneCollector) Collect(ch chan<- prometheus.Metric) {
	zones.Range(func(key, value any) bool {
		name, z := key.(string), value.(*zone)
		counts := z.counts()
		for mode, modeName := range modeNames {
			for result, resultName := range resultNames {
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(counts.requests[mode][result]), name, modeName, resultName)
			}
			ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(counts.inFlight[mode]), name, modeName)
			cumulative := make(map[float64]uint64, len(waitBuckets))
			var n uint64
			for bucket, bound := range waitBuckets {
				n += counts.waits[mode][bucket]
				cumulative[bound] = n
			}
			n += counts.waits[mode][len(waitBuckets)]
			seconds := time.Duration(counts.waitNanos[mode]).Seconds()
			ch <- prometheus.MustNewConstHistogram(c.wait, n, seconds, cumulative, name, modeName)
		}
		ch <- prometheus.MustNewConstMetric(c.regenerations, prometheus.CounterValue, float64(z.regenerations.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.duplicates, prometheus.CounterValue, float64(z.duplicates.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.holdExpired, prometheus.CounterValue, float64(z.holdExpired.Load()), name)
		for reason, reasonName := range unqueuedReasonNames {
			ch <- prometheus.MustNewConstMetric(c.unqueued, prometheus.CounterValue, float64(z.unqueued.total[reason].Load()), name, reasonName)
		}
		sessions, waiting := z.table.Stats()
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(waiting), name)
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(sessions), name)
		return true
	})
}

// Modes and results, as label values and placeholder values.
const (
	modeWriter = iota
	modeReader
	modeBypass
	modeCount
)

var modeNames = [modeCount]string{"writer", "reader", "bypass"}

const (
	resultImmediate = iota
	resultQueued
	resultRejectedFull
	resultRejectedTimeout
	resultRejectedShutdown
	resultCanceled
	resultRejectedCluster
	resultCount
)

var resultNames = [resultCount]string{
	"immediate", "queued", "rejected_full", "rejected_timeout", "rejected_shutdown", "canceled", "rejected_cluster",
}
