package caddymodule

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestStripedCountsAddUp: counts made in different stripes are reported
// as one zone's series, the waits in the buckets Prometheus would have put
// them in, to a registry that checks the collector's consistency.
func TestStripedCountsAddUp(t *testing.T) {
	h := &Handler{Zone: "striped-counts"}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	z := h.zone
	waits := []time.Duration{0, time.Millisecond, 1500 * time.Millisecond, 100 * time.Second}
	for i, waited := range waits {
		s := &z.stripes[i*7%stripeCount]
		s.count(modeWriter, resultQueued)
		s.observeWait(modeWriter, waited)
	}
	z.stripes[3].count(modeReader, resultImmediate)
	z.stripes[30].count(modeReader, resultImmediate)
	z.stripes[30].inFlight[modeBypass].Add(2)

	registry := prometheus.NewPedanticRegistry()
	if err := registerMetrics(registry); err != nil {
		t.Fatal(err)
	}
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := func(name string, labels ...string) *dto.Metric {
		t.Helper()
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
		metrics:
			for _, m := range f.Metric {
				have := map[string]string{}
				for _, l := range m.Label {
					have[l.GetName()] = l.GetValue()
				}
				for i := 0; i < len(labels); i += 2 {
					if have[labels[i]] != labels[i+1] {
						continue metrics
					}
				}
				return m
			}
		}
		t.Fatalf("no series %s %v", name, labels)
		return nil
	}
	zone := []string{"zone", "striped-counts"}
	if got := series("caddy_session_queue_requests_total", append(zone, "mode", "writer", "result", "queued")...).GetCounter().GetValue(); got != 4 {
		t.Errorf("requests_total{writer,queued} = %v, want 4", got)
	}
	if got := series("caddy_session_queue_requests_total", append(zone, "mode", "reader", "result", "immediate")...).GetCounter().GetValue(); got != 2 {
		t.Errorf("requests_total{reader,immediate} = %v, want 2", got)
	}
	if got := series("caddy_session_queue_in_flight", append(zone, "mode", "bypass")...).GetGauge().GetValue(); got != 2 {
		t.Errorf("in_flight{bypass} = %v, want 2", got)
	}
	wait := series("caddy_session_queue_wait_seconds", append(zone, "mode", "writer")...).GetHistogram()
	if wait.GetSampleCount() != 4 {
		t.Errorf("wait_seconds_count = %d, want 4", wait.GetSampleCount())
	}
	if want := 101.501; math.Abs(wait.GetSampleSum()-want) > 1e-9 {
		t.Errorf("wait_seconds_sum = %v, want %v", wait.GetSampleSum(), want)
	}
	// 0 and 1ms are at most .001 (a bucket's bound is inclusive), 1.5s at
	// most 2.5, and 100s above every bound.
	wantCumulative := map[float64]uint64{.001: 2, 1: 2, 2.5: 3, 60: 3}
	for _, b := range wait.Bucket {
		if want, ok := wantCumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("wait_seconds_bucket{le=%v} = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if len(wait.Bucket) != len(waitBuckets) {
		t.Errorf("%d buckets, want %d", len(wait.Bucket), len(waitBuckets))
	}
}

// TestStripedCountsUnderConcurrency: requests served on every CPU, over
// many connections, while the series are scraped, are each counted once,
// and in_flight is back to 0 when they are done.
func TestStripedCountsUnderConcurrency(t *testing.T) {
	h := &Handler{Zone: "striped-concurrent"}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewPedanticRegistry()
	if err := registerMetrics(registry); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	const connections, perConnection = 16, 200
	stop := make(chan struct{})
	scraped := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				close(scraped)
				return
			default:
			}
			if _, err := registry.Gather(); err != nil {
				scraped <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for c := range connections {
		wg.Go(func() {
			for i := range perConnection {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.RemoteAddr = fmt.Sprintf("192.0.2.1:%d", 40000+c)
				if i%2 == 0 {
					r.Header.Set("Cookie", fmt.Sprintf("PHPSESSID=concurrent-%d-%d", c, i))
				}
				withReplacer(r)
				if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-scraped; err != nil {
		t.Fatal(err)
	}
	counts := h.zone.counts()
	const each = connections * perConnection / 2
	if got := counts.requests[modeWriter][resultImmediate]; got != each {
		t.Errorf("writer immediate: %d, want %d", got, each)
	}
	if got := counts.requests[modeBypass][resultImmediate]; got != each {
		t.Errorf("bypass: %d, want %d", got, each)
	}
	var waits uint64
	for _, n := range counts.waits[modeWriter] {
		waits += n
	}
	if waits != each {
		t.Errorf("%d waits observed, want %d", waits, each)
	}
	for mode, n := range counts.inFlight {
		if n != 0 {
			t.Errorf("in_flight{%s} = %d after every request ended", modeNames[mode], n)
		}
	}
	if !h.zone.idle() {
		t.Error("requests still counted as running")
	}
}

// TestZoneSeriesOutliveItsLastRequest: a zone whose last config stops
// while a request still runs keeps its cluster series until that request
// leaves, and drops them then; its other series leave /metrics with the
// zone.
func TestZoneSeriesOutliveItsLastRequest(t *testing.T) {
	h := &Handler{Zone: "outlived"}
	app, err := provisionIn(t, h)
	if err != nil {
		t.Fatal(err)
	}
	z := h.zone
	registry := prometheus.NewPedanticRegistry()
	if err := registerMetrics(registry); err != nil {
		t.Fatal(err)
	}
	series := func(name string) int {
		t.Helper()
		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "zone" && l.GetValue() == "outlived" {
						n++
					}
				}
			}
		}
		return n
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	stripe := z.enter(r)
	if err := app.Cleanup(); err != nil { // the zone's last config stops
		t.Fatal(err)
	}
	if !z.closed.Load() {
		t.Fatal("the zone was not destructed")
	}
	if n := series("caddy_session_queue_cluster_degraded"); n != 1 {
		t.Fatalf("%d cluster_degraded series while a request runs, want 1", n)
	}
	if n := series("caddy_session_queue_requests_total"); n != 0 {
		t.Errorf("%d requests_total series of a zone no config uses, want 0", n)
	}
	z.leave(stripe)
	if n := series("caddy_session_queue_cluster_degraded"); n != 0 {
		t.Errorf("%d cluster_degraded series after the last request left, want 0", n)
	}
}
