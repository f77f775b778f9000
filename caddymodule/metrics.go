package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are created once per process and registered with the
// registry of every config that uses the handler: Caddy gives each config a
// fresh registry, and values kept in per-config collectors would drop to zero
// at every reload. Labels are zone, mode and result only; a session never
// becomes a label.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "requests_total",
		Help: "Requests seen by session_queue, by how they got their turn.",
	}, []string{"zone", "mode", "result"})

	waitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "wait_seconds",
		Help:    "Time requests waited for their session's turn.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"zone", "mode"})

	inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "in_flight",
		Help: "Requests past session_queue and not yet finished.",
	}, []string{"zone", "mode"})

	regenerationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "regenerations_total",
		Help: "Session ID regenerations followed.",
	}, []string{"zone"})

	duplicatesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "duplicates_total",
		Help: "Session IDs issued to one client while another client used them.",
	}, []string{"zone"})

	unqueuedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "unqueued_total",
		Help: "Requests carrying a session ID that could not be queued (too_long, bad_characters, undecryptable) and were passed on unserialized.",
	}, []string{"zone", "reason"})

	holdExpiredTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "hold_expired_total",
		Help: "Turns given up because a request held its session longer than max_hold.",
	}, []string{"zone"})

	zoneGauges = zoneCollector{
		waiting: prometheus.NewDesc("caddy_session_queue_waiting",
			"Requests waiting for their session's turn.", []string{"zone"}, nil),
		sessions: prometheus.NewDesc("caddy_session_queue_sessions",
			"Sessions with requests running or waiting.", []string{"zone"}, nil),
	}
)

var collectors = []prometheus.Collector{
	requestsTotal, waitSeconds, inFlight, regenerationsTotal, duplicatesTotal, holdExpiredTotal, unqueuedTotal, zoneGauges,
}

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

// zoneCollector reports the gauges that are read off the queue tables at
// scrape time, so they cost nothing per request.
type zoneCollector struct {
	waiting, sessions *prometheus.Desc
}

func (c zoneCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.sessions
}

func (c zoneCollector) Collect(ch chan<- prometheus.Metric) {
	zones.Range(func(name, value any) bool {
		sessions, waiting := value.(*zone).table.Stats()
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(waiting), name.(string))
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(sessions), name.(string))
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

// zoneMetrics are one zone's series, looked up once so that a request pays
// no label hashing.
type zoneMetrics struct {
	requests    [modeCount][resultCount]prometheus.Counter
	wait        [modeCount]prometheus.Observer
	inFlight    [modeCount]prometheus.Gauge
	holdExpired prometheus.Counter
	regenerated prometheus.Counter
	duplicates  prometheus.Counter
	unqueued    [unqueuedReasonCount]prometheus.Counter
}

func newZoneMetrics(zone string) zoneMetrics {
	var m zoneMetrics
	for mode, modeName := range modeNames {
		for result, resultName := range resultNames {
			m.requests[mode][result] = requestsTotal.WithLabelValues(zone, modeName, resultName)
		}
		m.wait[mode] = waitSeconds.WithLabelValues(zone, modeName)
		m.inFlight[mode] = inFlight.WithLabelValues(zone, modeName)
	}
	m.holdExpired = holdExpiredTotal.WithLabelValues(zone)
	m.regenerated = regenerationsTotal.WithLabelValues(zone)
	m.duplicates = duplicatesTotal.WithLabelValues(zone)
	for reason, reasonName := range unqueuedReasonNames {
		m.unqueued[reason] = unqueuedTotal.WithLabelValues(zone, reasonName)
	}
	return m
}

// deleteZoneMetrics drops a zone's series once the zone is gone, so that a
// renamed or removed zone does not linger on /metrics.
func deleteZoneMetrics(zone string) {
	for _, modeName := range modeNames {
		for _, resultName := range resultNames {
			requestsTotal.DeleteLabelValues(zone, modeName, resultName)
		}
		waitSeconds.DeleteLabelValues(zone, modeName)
		inFlight.DeleteLabelValues(zone, modeName)
	}
	holdExpiredTotal.DeleteLabelValues(zone)
	regenerationsTotal.DeleteLabelValues(zone)
	duplicatesTotal.DeleteLabelValues(zone)
	for _, reasonName := range unqueuedReasonNames {
		unqueuedTotal.DeleteLabelValues(zone, reasonName)
	}
}
