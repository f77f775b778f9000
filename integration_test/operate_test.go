package integration_test

// Tests of what an operator sees and does: the Prometheus metrics, the
// admin API, reloads under load, shutdown, long-lived requests (websockets,
// event streams) and max_hold.

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

const (
	adminURL = "http://localhost:2999"
	// adminMetricsURL is Caddy's own /metrics route on the admin endpoint.
	adminMetricsURL = adminURL + "/metrics"
	// directiveMetricsURL is served by the `metrics` directive in the site
	// blocks of TestMetricsAfterScriptedScenario.
	directiveMetricsURL = "http://127.0.0.1:9081/metrics"
)

// The label values of caddy_session_queue_requests_total, as documented.
var (
	queueModes   = []string{"writer", "reader", "bypass"}
	queueResults = []string{"immediate", "queued", "rejected_full", "rejected_timeout", "rejected_shutdown", "canceled"}
)

// eventually polls cond until it holds, for conditions that a response
// cannot signal: a deferred gauge decrement, a counter bumped after the turn
// it counts was passed on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectPassesBy waits for the named request to reach the backend, failing
// at once if it is queued in zone instead.
func expectPassesBy(t *testing.T, g *gateBackend, zone, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case got := <-g.arrived:
			if got != name {
				t.Fatalf("request %q reached the backend, want %q", got, name)
			}
			return
		default:
		}
		if n := zoneWaiting(t, zone); n > 0 {
			t.Fatalf("%s was queued (%d waiting in zone %s) instead of passing by", name, n, zone)
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %q never reached the backend", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitQueued is awaitWaiting that fails at once if a request reaches the
// backend meanwhile: it was meant to wait.
func awaitQueued(t *testing.T, g *gateBackend, zone string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := zoneWaiting(t, zone); got != n; got = zoneWaiting(t, zone) {
		select {
		case name := <-g.arrived:
			t.Fatalf("%s reached the backend; want %d requests waiting in zone %s, %d are", name, n, zone, got)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone %s: %d requests waiting, want %d", zone, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sendWith issues a GET for path carrying cookie and the extra header
// fields, named for the backend, in a goroutine; its result arrives on the
// returned channel.
func sendWith(ctx context.Context, path, cookie, name string, header http.Header) <-chan result {
	return sendRequest(ctx, http.MethodGet, path, cookie, name, header, nil)
}

// sendRequest issues a request of method for path with body, carrying
// cookie and header, named for the backend, on a connection of its own in
// a goroutine; its result arrives on the returned channel.
func sendRequest(ctx context.Context, method, path, cookie, name string, header http.Header, body io.Reader) <-chan result {
	done := make(chan result, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, method, caddyAddr+path, body)
		if err != nil {
			done <- result{name: name, err: err}
			return
		}
		for field, values := range header {
			req.Header[field] = values
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		req.Header.Set("X-Request-Name", name)
		resp, err := freshClient().Do(req)
		if err != nil {
			done <- result{name: name, err: err}
			return
		}
		done <- result{name: name, status: resp.StatusCode, header: resp.Header, body: readBody(resp)}
	}()
	return done
}

// sendAcrossHandover sends a request right after an in-place reload and
// returns it once it is inside the backend. A connection made while the
// listener changes hands may be closed unanswered by the old server (see
// loadCaddyfileGrace); such a request never reached the handler, so it is
// sent again.
func sendAcrossHandover(t *testing.T, g *gateBackend, path, cookie, name string) <-chan result {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		ch := send(t.Context(), path, cookie, name)
		select {
		case got := <-g.arrived:
			if got != name {
				t.Fatalf("request %q reached the backend, want %q", got, name)
			}
			return ch
		case r := <-ch:
			if r.err == nil {
				t.Fatalf("%s answered %d before reaching the backend", name, r.status)
			}
			t.Logf("%s failed during the handover, sending again: %v", name, r.err)
		case <-time.After(30 * time.Second):
			t.Fatalf("request %q never reached the backend", name)
		}
	}
	t.Fatalf("%s failed five times", name)
	return nil
}

// metricsSnapshot is one parsed scrape.
type metricsSnapshot struct {
	text     string
	families map[string]*dto.MetricFamily
}

func scrapeMetrics(t *testing.T, url string) metricsSnapshot {
	t.Helper()
	// A scrape right after an in-place reload may meet the listener
	// handover (see loadCaddyfileGrace); a GET is safe to repeat.
	var resp *http.Response
	var err error
	for attempt := 0; ; attempt++ {
		if resp, err = freshClient().Get(url); err == nil {
			break
		}
		if attempt == 4 {
			t.Fatalf("scraping %s: %v", url, err)
		}
		t.Logf("scraping %s, trying again: %v", url, err)
	}
	text := readBody(resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: status %d: %s", url, resp.StatusCode, text)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return metricsSnapshot{text: text, families: families}
}

// series returns the series of family name whose labels are exactly the
// given name, value pairs, or nil.
func (s metricsSnapshot) series(name string, labels ...string) *dto.Metric {
	want := make(map[string]string)
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, m := range s.families[name].GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		matches := true
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				matches = false
				break
			}
		}
		if matches {
			return m
		}
	}
	return nil
}

// value is the value of a counter or gauge series; a missing series fails
// the test, as the dashboard and alerts rely on every series being there.
func (s metricsSnapshot) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.series(name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

func (s metricsSnapshot) histogram(t *testing.T, name string, labels ...string) *dto.Histogram {
	t.Helper()
	m := s.series(name, labels...)
	if m == nil || m.Histogram == nil {
		t.Fatalf("no histogram %s%v", name, labels)
	}
	return m.Histogram
}

// requestCounts are requests by mode, then result; absent entries are 0.
type requestCounts map[string]map[string]float64

// checkRequests compares every mode and result of requests_total in zone
// with want.
func checkRequests(t *testing.T, where string, s metricsSnapshot, zone string, want requestCounts) {
	t.Helper()
	for _, mode := range queueModes {
		for _, res := range queueResults {
			got := s.value(t, "caddy_session_queue_requests_total", "zone", zone, "mode", mode, "result", res)
			if got != want[mode][res] {
				t.Errorf("%s: requests_total{zone=%q,mode=%q,result=%q} = %v, want %v", where, zone, mode, res, got, want[mode][res])
			}
		}
	}
}

// checkNoSessionInMetrics fails if a session_queue series has a label other
// than zone, mode, result and reason (a fixed set each), or if a session ID or its hash appears
// anywhere in the scrape: a session must never become a series.
func checkNoSessionInMetrics(t *testing.T, s metricsSnapshot, ids ...string) {
	t.Helper()
	allowed := []string{"zone", "mode", "result", "reason"}
	for name, f := range s.families {
		if !strings.HasPrefix(name, "caddy_session_queue_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(allowed, l.GetName()) {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, id := range ids {
		if strings.Contains(s.text, id) {
			t.Errorf("/metrics contains the session ID %q", id)
		}
		if strings.Contains(s.text, idgen.Hash(id)) {
			t.Errorf("/metrics contains the hash of session %q", id)
		}
	}
}

// adminZone is one entry of GET /session_queue/zones.
type adminZone struct {
	Zone          string                       `json:"zone"`
	MaxReaders    int                          `json:"max_readers"`
	MaxWaiting    int                          `json:"max_waiting"`
	Sessions      int                          `json:"sessions"`
	Waiting       int                          `json:"waiting"`
	Requests      map[string]map[string]uint64 `json:"requests"`
	HoldExpired   uint64                       `json:"hold_expired"`
	Regenerations uint64                       `json:"regenerations"`
	Duplicates    uint64                       `json:"duplicates"`
	Unqueued      map[string]uint64            `json:"unqueued"`
}

// adminSession is one entry of GET /session_queue/zones/{zone}/sessions.
type adminSession struct {
	Session      string  `json:"session"`
	Readers      int     `json:"readers"`
	Writer       bool    `json:"writer"`
	Waiting      int     `json:"waiting"`
	OldestWaitMS float64 `json:"oldest_wait_ms"`
}

func adminRequest(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, adminURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := freshClient().Do(req)
	if err != nil {
		t.Fatalf("admin API %s %s: %v", method, path, err)
	}
	return resp.StatusCode, readBody(resp)
}

// adminZones returns the zones by name, and the raw body.
func adminZones(t *testing.T) (map[string]adminZone, string) {
	t.Helper()
	status, body := adminRequest(t, http.MethodGet, "/session_queue/zones")
	if status != http.StatusOK {
		t.Fatalf("GET /session_queue/zones: status %d: %s", status, body)
	}
	var list []adminZone
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("GET /session_queue/zones: %v: %s", err, body)
	}
	byName := make(map[string]adminZone, len(list))
	for _, z := range list {
		byName[z.Zone] = z
	}
	return byName, body
}

func adminZoneNamed(t *testing.T, name string) adminZone {
	t.Helper()
	zones, body := adminZones(t)
	z, ok := zones[name]
	if !ok {
		t.Fatalf("no zone %q in %s", name, body)
	}
	return z
}

// checkAdminRequests compares a zone's request counters with want, every
// mode and result.
func checkAdminRequests(t *testing.T, z adminZone, want requestCounts) {
	t.Helper()
	for _, mode := range queueModes {
		for _, res := range queueResults {
			got, ok := z.Requests[mode][res]
			if !ok || float64(got) != want[mode][res] {
				t.Errorf("zone %s: requests[%s][%s] = %d (present: %v), want %v", z.Zone, mode, res, got, ok, want[mode][res])
			}
		}
	}
}

// metricsSites has two handlers in zone "metrics": /impatient gives up
// waiting after 200ms while the other handler lets requests wait long, so
// both a max_wait refusal and queued requests can be scripted in one zone.
// The `metrics` directive serves the same registry as the admin endpoint,
// on :9081.
func metricsSites(backend string, maxWaiting int) string {
	return fmt.Sprintf(`:9080 {
	header >X-Queue-Result {http.session_queue.result}
	handle_errors 429 503 {
		respond "session_queue refused: {err.status_code}" {err.status_code}
	}
	handle /impatient {
		session_queue {
			zone metrics
			max_waiting %[2]d
			max_wait 200ms
		}
		reverse_proxy %[1]s
	}
	handle {
		session_queue {
			zone metrics
			read_only path /read
			max_waiting %[2]d
		}
		reverse_proxy %[1]s
	}
}
:9081 {
	metrics
}
`, backend, maxWaiting)
}

// TestMetricsAfterScriptedScenario plays each outcome in zone "metrics",
// then checks every series on /metrics: the gauges while requests hold and
// wait, the exact counters and histogram counts afterwards, that the values
// survive a reload, and that no session ever becomes a label.
func TestMetricsAfterScriptedScenario(t *testing.T) {
	g := newGateBackend(t)
	const (
		idOne = "metrics-secret-one"
		idTwo = "metrics-secret-two"
	)
	cookieOne, cookieTwo := "PHPSESSID="+idOne, "PHPSESSID="+idTwo
	loadCaddyfile(t, metricsSites(g.URL, 2))
	ctx := t.Context()

	holder := send(ctx, "/", cookieOne, "holder")
	g.expectArrival(t, "holder")
	if r := wait(t, send(ctx, "/impatient", cookieOne, "impatient")); r.status != http.StatusServiceUnavailable {
		t.Fatalf("impatient: status %d, want 503", r.status)
	}
	q1 := send(ctx, "/", cookieOne, "q1")
	awaitWaiting(t, "metrics", 1)
	q2 := send(ctx, "/", cookieOne, "q2")
	awaitWaiting(t, "metrics", 2)
	if r := wait(t, send(ctx, "/", cookieOne, "full")); r.status != http.StatusTooManyRequests {
		t.Fatalf("full: status %d, want 429", r.status)
	}
	anon := send(ctx, "/", "", "anon")
	g.expectArrival(t, "anon")
	reader := send(ctx, "/read", cookieTwo, "reader")
	g.expectArrival(t, "reader")

	// Inside the backend: holder (writer), reader and anon (bypass); q1 and
	// q2 wait; sessions one and two are busy.
	busy := scrapeMetrics(t, adminMetricsURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"caddy_session_queue_waiting", []string{"zone", "metrics"}, 2},
		{"caddy_session_queue_sessions", []string{"zone", "metrics"}, 2},
		{"caddy_session_queue_in_flight", []string{"zone", "metrics", "mode", "writer"}, 1},
		{"caddy_session_queue_in_flight", []string{"zone", "metrics", "mode", "reader"}, 1},
		{"caddy_session_queue_in_flight", []string{"zone", "metrics", "mode", "bypass"}, 1},
	} {
		if got := busy.value(t, c.name, c.labels...); got != c.want {
			t.Errorf("while busy: %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	checkNoSessionInMetrics(t, busy, idOne, idTwo)

	g.let("anon")
	g.let("reader")
	g.let("holder")
	g.expectArrival(t, "q1")
	g.let("q1")
	g.expectArrival(t, "q2")
	g.let("q2")
	for _, ch := range []<-chan result{anon, reader, holder, q1, q2} {
		if r := wait(t, ch); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r.name, r.status)
		}
	}

	// The gauges drop once the handlers have returned, which may be just
	// after the clients got their answers.
	var idle metricsSnapshot
	eventually(t, "in_flight, waiting and sessions back to 0", func() bool {
		idle = scrapeMetrics(t, adminMetricsURL)
		sum := idle.value(t, "caddy_session_queue_waiting", "zone", "metrics") +
			idle.value(t, "caddy_session_queue_sessions", "zone", "metrics")
		for _, mode := range queueModes {
			sum += idle.value(t, "caddy_session_queue_in_flight", "zone", "metrics", "mode", mode)
		}
		return sum == 0
	})

	want := requestCounts{
		"writer": {"immediate": 1, "queued": 2, "rejected_full": 1, "rejected_timeout": 1},
		"reader": {"immediate": 1},
		"bypass": {"immediate": 1},
	}
	checkCounters := func(where string, s metricsSnapshot) {
		t.Helper()
		checkRequests(t, where, s, "metrics", want)
		// Every request that asked for a turn observed its wait, refused
		// or not: holder, impatient, q1, q2 and full; bypass never waits.
		for mode, n := range map[string]uint64{"writer": 5, "reader": 1, "bypass": 0} {
			if got := s.histogram(t, "caddy_session_queue_wait_seconds", "zone", "metrics", "mode", mode).GetSampleCount(); got != n {
				t.Errorf("%s: wait_seconds_count{mode=%q} = %d, want %d", where, mode, got, n)
			}
		}
		writerWait := s.histogram(t, "caddy_session_queue_wait_seconds", "zone", "metrics", "mode", "writer")
		if writerWait.GetSampleSum() < 0.2 {
			t.Errorf("%s: wait_seconds_sum{mode=writer} = %v, want at least impatient's 200ms", where, writerWait.GetSampleSum())
		}
		for _, b := range writerWait.GetBucket() {
			if b.GetUpperBound() == 0.1 && b.GetCumulativeCount() > 4 {
				t.Errorf("%s: %d writer waits within 100ms, but impatient waited 200ms", where, b.GetCumulativeCount())
			}
		}
		for _, name := range []string{"hold_expired_total", "regenerations_total", "duplicates_total"} {
			if got := s.value(t, "caddy_session_queue_"+name, "zone", "metrics"); got != 0 {
				t.Errorf("%s: %s{zone=metrics} = %v, want 0", where, name, got)
			}
		}
	}
	checkCounters("admin /metrics", idle)
	checkCounters("metrics directive", scrapeMetrics(t, directiveMetricsURL))
	checkAdminRequests(t, adminZoneNamed(t, "metrics"), want)
	checkNoSessionInMetrics(t, idle, idOne, idTwo)
	for name, typ := range map[string]dto.MetricType{
		"caddy_session_queue_requests_total":      dto.MetricType_COUNTER,
		"caddy_session_queue_wait_seconds":        dto.MetricType_HISTOGRAM,
		"caddy_session_queue_waiting":             dto.MetricType_GAUGE,
		"caddy_session_queue_in_flight":           dto.MetricType_GAUGE,
		"caddy_session_queue_sessions":            dto.MetricType_GAUGE,
		"caddy_session_queue_regenerations_total": dto.MetricType_COUNTER,
		"caddy_session_queue_duplicates_total":    dto.MetricType_COUNTER,
		"caddy_session_queue_hold_expired_total":  dto.MetricType_COUNTER,
		"caddy_session_queue_unqueued_total":      dto.MetricType_COUNTER,
	} {
		if got := idle.families[name].GetType(); idle.families[name] == nil || got != typ {
			t.Errorf("%s: type %v (present: %v), want %v", name, got, idle.families[name] != nil, typ)
		}
	}

	// Caddy gives every config a fresh registry; the counters must carry
	// over into it rather than start again from zero.
	cfg, err := adaptCaddyfile(t, "1ns", metricsSites(g.URL, 3))
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	if err := reloadConfig(cfg); err != nil {
		t.Fatalf("reload: %v", err)
	}
	awaitMaxWaiting(t, "metrics", 3)
	checkCounters("after the reload", scrapeMetrics(t, adminMetricsURL))

	// And the new config's handlers count into the same series.
	again := sendAcrossHandover(t, g, "/", cookieOne, "again")
	g.let("again")
	if r := wait(t, again); r.status != http.StatusOK {
		t.Fatalf("again: status %d, want 200", r.status)
	}
	want["writer"]["immediate"]++
	checkRequests(t, "after the reload, one more", scrapeMetrics(t, adminMetricsURL), "metrics", want)
	checkRequests(t, "after the reload, metrics directive", scrapeMetrics(t, directiveMetricsURL), "metrics", want)
}

// TestAdminZonesAndBusiestSessions checks both admin endpoints' JSON while
// three sessions hold and wait, their errors, and that no body ever carries
// a session ID.
func TestAdminZonesAndBusiestSessions(t *testing.T) {
	g := newGateBackend(t)
	ids := []string{"admin-secret-a", "admin-secret-b", "admin-secret-c"}
	cookieA, cookieB, cookieC := "PHPSESSID="+ids[0], "PHPSESSID="+ids[1], "PHPSESSID="+ids[2]
	loadCaddyfile(t, queuedSite(g.URL, `zone admin
		read_only path /read
		max_readers 2
		max_waiting 5`))
	ctx := t.Context()

	// A: a writer holds; a writer and a reader wait behind it.
	aHold := send(ctx, "/", cookieA, "a-hold")
	g.expectArrival(t, "a-hold")
	aWrite := send(ctx, "/", cookieA, "a-write")
	awaitWaiting(t, "admin", 1)
	aRead := send(ctx, "/read", cookieA, "a-read")
	awaitWaiting(t, "admin", 2)
	// B: two readers hold; a writer waits.
	bRead1 := send(ctx, "/read", cookieB, "b-read1")
	g.expectArrival(t, "b-read1")
	bRead2 := send(ctx, "/read", cookieB, "b-read2")
	g.expectArrival(t, "b-read2")
	bWrite := send(ctx, "/", cookieB, "b-write")
	awaitWaiting(t, "admin", 3)
	// C: one reader holds.
	cRead := send(ctx, "/read", cookieC, "c-read")
	g.expectArrival(t, "c-read")

	var bodies []string

	zones, body := adminZones(t)
	bodies = append(bodies, body)
	var rawZones []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &rawZones); err != nil {
		t.Fatalf("zones: %v", err)
	}
	wantKeys := []string{"duplicates", "hold_expired", "max_readers", "max_waiting", "regenerations", "requests", "sessions", "unqueued", "waiting", "zone"}
	var names []string
	for _, z := range rawZones {
		keys := slices.Sorted(maps.Keys(z))
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("zone object keys %v, want %v", keys, wantKeys)
		}
		var name string
		_ = json.Unmarshal(z["zone"], &name)
		names = append(names, name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("zones not sorted by name: %v", names)
	}
	z := zones["admin"]
	if z.MaxReaders != 2 || z.MaxWaiting != 5 || z.Sessions != 3 || z.Waiting != 3 ||
		z.HoldExpired != 0 || z.Regenerations != 0 || z.Duplicates != 0 {
		t.Errorf("zone admin: %+v; want max_readers 2, max_waiting 5, sessions 3, waiting 3, no expiries, regenerations or duplicates", z)
	}
	checkAdminRequests(t, z, requestCounts{"writer": {"immediate": 1}, "reader": {"immediate": 3}})

	status, body := adminRequest(t, http.MethodGet, "/session_queue/zones/admin/sessions")
	bodies = append(bodies, body)
	if status != http.StatusOK {
		t.Fatalf("sessions: status %d: %s", status, body)
	}
	var rawSessions struct {
		Zone     string                       `json:"zone"`
		Sessions []map[string]json.RawMessage `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &rawSessions); err != nil {
		t.Fatalf("sessions: %v: %s", err, body)
	}
	wantSessionKeys := []string{"oldest_wait_ms", "readers", "session", "waiting", "writer"}
	for _, s := range rawSessions.Sessions {
		keys := slices.Sorted(maps.Keys(s))
		if !slices.Equal(keys, wantSessionKeys) {
			t.Errorf("session object keys %v, want %v", keys, wantSessionKeys)
		}
	}
	var sessions struct {
		Zone     string         `json:"zone"`
		Sessions []adminSession `json:"sessions"`
	}
	_ = json.Unmarshal([]byte(body), &sessions)
	if sessions.Zone != "admin" || len(sessions.Sessions) != 3 {
		t.Fatalf("sessions: %s; want zone admin with 3 sessions", body)
	}
	// Busiest first: most waiting, then longest waiting.
	wantSessions := []adminSession{
		{Session: idgen.Hash(ids[0]), Writer: true, Waiting: 2},
		{Session: idgen.Hash(ids[1]), Readers: 2, Waiting: 1},
		{Session: idgen.Hash(ids[2]), Readers: 1},
	}
	for i, got := range sessions.Sessions {
		w := wantSessions[i]
		if got.Session != w.Session || got.Readers != w.Readers || got.Writer != w.Writer || got.Waiting != w.Waiting {
			t.Errorf("sessions[%d] = %+v, want %+v", i, got, w)
		}
		if (got.Waiting > 0) != (got.OldestWaitMS > 0) {
			t.Errorf("sessions[%d]: %d waiting, oldest_wait_ms %v", i, got.Waiting, got.OldestWaitMS)
		}
	}
	if a, b := sessions.Sessions[0].OldestWaitMS, sessions.Sessions[1].OldestWaitMS; a < b {
		t.Errorf("oldest_wait_ms: A %v < B %v, but A's waiter came first", a, b)
	}

	status, body = adminRequest(t, http.MethodGet, "/session_queue/zones/admin/sessions?top=1")
	bodies = append(bodies, body)
	var top1 struct {
		Sessions []adminSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &top1); status != http.StatusOK || err != nil ||
		len(top1.Sessions) != 1 || top1.Sessions[0].Session != idgen.Hash(ids[0]) {
		t.Errorf("?top=1: status %d, %s; want only session A", status, body)
	}

	for _, bad := range []string{"0", "-1", "1001", "ten", "1.5"} {
		status, body := adminRequest(t, http.MethodGet, "/session_queue/zones/admin/sessions?top="+bad)
		bodies = append(bodies, body)
		var apiErr struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &apiErr); status != http.StatusBadRequest || err != nil || !strings.Contains(apiErr.Error, "top") {
			t.Errorf("?top=%s: status %d, %s; want 400 with a JSON error about top", bad, status, body)
		}
	}
	status, body = adminRequest(t, http.MethodGet, "/session_queue/zones/nowhere/sessions")
	bodies = append(bodies, body)
	if status != http.StatusNotFound || !strings.Contains(body, "nowhere") {
		t.Errorf("unknown zone: status %d, %s; want 404 naming the zone", status, body)
	}
	if status, body := adminRequest(t, http.MethodPost, "/session_queue/zones"); status != http.StatusMethodNotAllowed {
		t.Errorf("POST zones: status %d, %s; want 405", status, body)
	}

	for _, b := range bodies {
		for _, id := range ids {
			if strings.Contains(b, id) {
				t.Errorf("admin response carries session ID %q: %s", id, b)
			}
		}
	}

	g.let("a-hold")
	g.expectArrival(t, "a-write")
	g.let("a-write")
	g.expectArrival(t, "a-read")
	g.let("a-read")
	g.let("b-read1")
	g.let("b-read2")
	g.expectArrival(t, "b-write")
	g.let("b-write")
	g.let("c-read")
	for _, ch := range []<-chan result{aHold, aWrite, aRead, bRead1, bRead2, bWrite, cRead} {
		if r := wait(t, ch); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r.name, r.status)
		}
	}

	eventually(t, "zone admin idle", func() bool {
		z := adminZoneNamed(t, "admin")
		return z.Sessions == 0 && z.Waiting == 0
	})
	checkAdminRequests(t, adminZoneNamed(t, "admin"), requestCounts{
		"writer": {"immediate": 1, "queued": 2},
		"reader": {"immediate": 3, "queued": 1},
	})
	status, body = adminRequest(t, http.MethodGet, "/session_queue/zones/admin/sessions")
	if status != http.StatusOK || strings.TrimSpace(body) != `{"sessions":[],"zone":"admin"}` {
		t.Errorf("idle sessions: status %d, %s; want an empty list", status, body)
	}
}

// arrivalGate takes a gate backend's arrivals off its channel: while shut
// it keeps them inside the backend, once open it lets each go as it comes.
type arrivalGate struct {
	g    *gateBackend
	quit chan struct{}

	mu    sync.Mutex
	seen  map[string]bool
	twice []string
	open  bool
	held  []string
}

func newArrivalGate(t *testing.T, g *gateBackend) *arrivalGate {
	a := &arrivalGate{g: g, quit: make(chan struct{}), seen: make(map[string]bool)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case name := <-g.arrived:
				a.arrive(name)
			case <-a.quit:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(a.quit)
		<-done
	})
	return a
}

func (a *arrivalGate) arrive(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[name] {
		a.twice = append(a.twice, name)
		return
	}
	a.seen[name] = true
	if a.open {
		a.g.let(name)
	} else {
		a.held = append(a.held, name)
	}
}

func (a *arrivalGate) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.open = true
	for _, name := range a.held {
		a.g.let(name)
	}
	a.held = nil
}

func (a *arrivalGate) saw(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[name]
}

func (a *arrivalGate) arrivals() (n int, twice []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen), slices.Clone(a.twice)
}

func burstSite(backend, config string, maxWaiting int) string {
	return fmt.Sprintf(`:9080 {
	header X-Config %s
	session_queue {
		zone burst
		max_waiting %d
	}
	reverse_proxy %s
}
`, config, maxWaiting, backend)
}

// TestReloadDuringBurst reloads while 40 requests of 4 sessions hold or
// wait and 40 more arrive. The old config is stopped, its handlers cleaned
// up, while its requests still wait; they keep their places in the shared
// zone, every request is answered 200, and no two requests of a session are
// ever inside the backend together.
func TestReloadDuringBurst(t *testing.T) {
	const (
		sessions   = 4
		perSession = 10 // per wave
		total      = 2 * sessions * perSession
	)
	g := newGateBackend(t)
	loadCaddyfileGrace(t, "1m", burstSite(g.URL, "old", 50))
	gate := newArrivalGate(t, g)

	results := make(chan result, total)
	cookies := make(map[string]string)
	fire := func(name string) {
		ch := send(t.Context(), "/", cookies[name], name)
		go func() { results <- <-ch }()
	}
	wave := func(n int) {
		for i := range perSession {
			for s := range sessions {
				name := fmt.Sprintf("wave%d-s%d-%d", n, s, i)
				cookies[name] = fmt.Sprintf("PHPSESSID=burst-%d", s)
				fire(name)
			}
		}
	}

	wave(1)
	awaitWaiting(t, "burst", sessions*perSession-sessions)
	eventually(t, "one request of each session inside the backend", func() bool {
		n, _ := gate.arrivals()
		return n == sessions
	})

	reloaded := make(chan error, 1)
	go func() {
		cfg, err := adaptCaddyfile(t, "1m", burstSite(g.URL, "new", 60))
		if err == nil {
			err = reloadConfig(cfg)
		}
		reloaded <- err
	}()
	wave(2)
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reload waited for the old config's requests")
	}

	// The old config has stopped; nothing has been let go yet.
	z := adminZoneNamed(t, "burst")
	if z.MaxWaiting != 60 || z.Waiting < sessions*perSession-sessions {
		t.Fatalf("after the reload: zone %+v; want max_waiting 60 and wave 1 still waiting", z)
	}
	if n, _ := gate.arrivals(); n != sessions {
		t.Fatalf("%d requests reached the backend before any was let go, want %d", n, sessions)
	}

	gate.release()
	attempts := make(map[string]int)
	byConfig := make(map[string]int)
	for done := 0; done < total; {
		select {
		case r := <-results:
			if r.err != nil {
				// Only wave 2 can have met the listener handover; wave 1
				// was queued before the reload began.
				if strings.HasPrefix(r.name, "wave1") || gate.saw(r.name) || attempts[r.name] == 5 {
					t.Fatalf("%s: %v", r.name, r.err)
				}
				attempts[r.name]++
				t.Logf("%s failed during the handover, sending again: %v", r.name, r.err)
				fire(r.name)
				continue
			}
			config := r.header.Get("X-Config")
			if r.status != http.StatusOK || r.body != r.name {
				t.Errorf("%s: status %d, body %q; want 200", r.name, r.status, r.body)
			}
			if strings.HasPrefix(r.name, "wave1") && config != "old" {
				t.Errorf("%s: served by the %q config, want old", r.name, config)
			}
			byConfig[config]++
			done++
		case <-time.After(60 * time.Second):
			t.Fatal("requests never answered")
		}
	}
	t.Logf("requests served by config: %v; sent again: %d", byConfig, len(attempts))

	for s := range sessions {
		if got := g.maxConcurrent(fmt.Sprint("burst-", s)); got != 1 {
			t.Errorf("session burst-%d: %d requests inside the backend together, want 1", s, got)
		}
	}
	if n, twice := gate.arrivals(); n != total || len(twice) > 0 {
		t.Errorf("%d distinct requests reached the backend, want %d; twice: %v", n, total, twice)
	}
	// A request that reached a handler and was then dropped would show as
	// refused or canceled.
	z = adminZoneNamed(t, "burst")
	var admitted uint64
	for mode, byResult := range z.Requests {
		for res, n := range byResult {
			switch {
			case mode == "writer" && (res == "immediate" || res == "queued"):
				admitted += n
			case n != 0:
				t.Errorf("zone burst: requests[%s][%s] = %d, want 0", mode, res, n)
			}
		}
	}
	if admitted != total {
		t.Errorf("zone burst: %d writers admitted, want %d", admitted, total)
	}
}

// TestShutdownTurnsWaitersAway stops the HTTP app while one request of a
// session holds its turn and two wait: the waiters get 503 at once although
// max_wait is a minute, and the holder still finishes within the grace
// period.
func TestShutdownTurnsWaitersAway(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=shutdown-session"
	loadCaddyfileGrace(t, "1m", queuedSite(g.URL, "zone shutdown\n\t\tmax_wait 1m"))
	ctx := t.Context()

	holder := send(ctx, "/", cookie, "holder")
	g.expectArrival(t, "holder")
	w1 := send(ctx, "/", cookie, "w1")
	awaitWaiting(t, "shutdown", 1)
	w2 := send(ctx, "/", cookie, "w2")
	awaitWaiting(t, "shutdown", 2)

	start := time.Now()
	stopped := make(chan error, 1)
	// Not loadConfig, which would then start a config again: this is the
	// last config using the zone going away.
	go func() { stopped <- caddy.Load([]byte(adminOnly), true) }()
	for _, ch := range []<-chan result{w1, w2} {
		r := wait(t, ch)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" ||
			r.header.Get("X-Queue-Result") != "rejected_shutdown" {
			t.Errorf("%s: status %d, Retry-After %q, result %q; want 503, 1, rejected_shutdown",
				r.name, r.status, r.header.Get("Retry-After"), r.header.Get("X-Queue-Result"))
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("waiters were turned away after %s; max_wait is 1m, a shutdown should not wait for it", took)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stopping: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stopping the config waited for the held request")
	}
	if zones, body := adminZones(t); zones["shutdown"].Zone != "" {
		t.Errorf("zone shutdown still listed after its last config stopped: %s", body)
	}

	select {
	case r := <-holder:
		t.Fatalf("holder answered (status %d, %v) before the backend let it go", r.status, r.err)
	default:
	}
	g.let("holder")
	if r := wait(t, holder); r.status != http.StatusOK || r.body != "holder" {
		t.Fatalf("holder: status %d, body %q; want 200 from the backend", r.status, r.body)
	}
}

// websocketGUID is the constant of RFC 6455, section 1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// The example handshake of RFC 6455, section 1.3: the test checks the
// backend's answer against the RFC's, not against the backend's own sums.
const (
	rfcWebsocketKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcWebsocketAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// newWebsocketEchoBackend accepts websocket upgrades by hand and echoes the
// bytes it receives. Framing is left to the endpoints: the proxy only
// tunnels bytes, which is all these tests look at.
func newWebsocketEchoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
			http.Error(w, "websocket upgrades only", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("websocket backend: hijack: %v", err)
			return
		}
		defer conn.Close()
		sum := sha1.Sum([]byte(key + websocketGUID))
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		if err := rw.Flush(); err != nil {
			return
		}
		// Until the proxy closes its side, after the client closed.
		_, _ = io.Copy(conn, rw)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type websocketConn struct {
	net.Conn
	r *bufio.Reader
}

// openWebsocket performs the client side of the handshake through Caddy.
func openWebsocket(t *testing.T, cookie string) websocketConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:9080", 10*time.Second)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n", rfcWebsocketKey, cookie)
	ws := websocketConn{Conn: conn, r: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(ws.r, nil)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != rfcWebsocketAccept {
		t.Fatalf("websocket handshake: status %d, Sec-WebSocket-Accept %q; want 101, %q",
			resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"), rfcWebsocketAccept)
	}
	ws.echo(t, "hello")
	return ws
}

// echo sends msg and expects it back: the tunnel is open end to end.
func (ws websocketConn) echo(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(ws, msg); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(ws.r, buf); err != nil || string(buf) != msg {
		t.Fatalf("websocket echo: %q, %v; want %q", buf, err, msg)
	}
}

func websocketSite(websocketBackend, backend, options string) string {
	return fmt.Sprintf(`:9080 {
	header >X-Queue-Result {http.session_queue.result}
	session_queue {
		%s
	}
	reverse_proxy /ws %s
	reverse_proxy %s
}
`, options, websocketBackend, backend)
}

// TestWebsocketBypassesQueue: an open websocket does not hold its
// session's turn, so the session's other requests go on.
func TestWebsocketBypassesQueue(t *testing.T) {
	g := newGateBackend(t)
	ws := newWebsocketEchoBackend(t)
	const cookie = "PHPSESSID=websocket-session"
	loadCaddyfile(t, websocketSite(ws.URL, g.URL, "zone websocket"))

	sock := openWebsocket(t, cookie)
	normal := send(t.Context(), "/", cookie, "normal")
	expectPassesBy(t, g, "websocket", "normal")
	g.let("normal")
	if r := wait(t, normal); r.status != http.StatusOK || r.header.Get("X-Queue-Result") != "immediate" {
		t.Fatalf("normal: status %d, result %q; want 200 immediate", r.status, r.header.Get("X-Queue-Result"))
	}
	sock.echo(t, "still open")
	checkAdminRequests(t, adminZoneNamed(t, "websocket"), requestCounts{
		"writer": {"immediate": 1},
		"bypass": {"immediate": 1},
	})
}

// TestWebsocketQueuedWithBypassNone shows what the default bypass prevents:
// with `bypass none`, an open websocket holds its session's turn and the
// session's next request waits until the websocket closes.
func TestWebsocketQueuedWithBypassNone(t *testing.T) {
	g := newGateBackend(t)
	ws := newWebsocketEchoBackend(t)
	const cookie = "PHPSESSID=websocket-session"
	loadCaddyfile(t, websocketSite(ws.URL, g.URL, "zone websocket_none\n\t\tbypass none"))

	sock := openWebsocket(t, cookie)
	normal := send(t.Context(), "/", cookie, "normal")
	awaitQueued(t, g, "websocket_none", 1)
	sock.echo(t, "holding the turn")
	sock.Close()
	g.expectArrival(t, "normal")
	g.let("normal")
	if r := wait(t, normal); r.status != http.StatusOK || r.header.Get("X-Queue-Result") != "queued" {
		t.Fatalf("normal: status %d, result %q; want 200 queued", r.status, r.header.Get("X-Queue-Result"))
	}
}

var eventStream = http.Header{"Accept": {"text/event-stream"}}

// TestEventStreamBypassesQueue: a Server-Sent Events request held open does
// not hold its session's turn.
func TestEventStreamBypassesQueue(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=eventstream-session"
	loadCaddyfile(t, queuedSite(g.URL, "zone eventstream"))
	ctx := t.Context()

	stream := sendWith(ctx, "/events", cookie, "stream", eventStream)
	g.expectArrival(t, "stream")
	normal := send(ctx, "/", cookie, "normal")
	expectPassesBy(t, g, "eventstream", "normal")
	g.let("normal")
	if r := wait(t, normal); r.status != http.StatusOK || r.header.Get("X-Queue-Result") != "immediate" {
		t.Errorf("normal: status %d, result %q; want 200 immediate", r.status, r.header.Get("X-Queue-Result"))
	}
	g.let("stream")
	if r := wait(t, stream); r.status != http.StatusOK || r.header.Get("X-Queue-Mode") != "bypass" {
		t.Errorf("stream: status %d, mode %q; want 200 bypass", r.status, r.header.Get("X-Queue-Mode"))
	}
}

// TestEventStreamQueuedWhenBypassIsReplaced: `bypass <matcher>` replaces
// the default, so the matched long-poll passes by while an event stream
// now queues like any request.
func TestEventStreamQueuedWhenBypassIsReplaced(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=eventstream-session"
	loadCaddyfile(t, queuedSite(g.URL, "zone eventstream_custom\n\t\tbypass path /poll"))
	ctx := t.Context()

	poll := send(ctx, "/poll", cookie, "poll")
	g.expectArrival(t, "poll")
	normal := send(ctx, "/", cookie, "normal")
	expectPassesBy(t, g, "eventstream_custom", "normal")
	stream := sendWith(ctx, "/events", cookie, "stream", eventStream)
	awaitQueued(t, g, "eventstream_custom", 1)
	g.let("normal")
	wait(t, normal)
	g.expectArrival(t, "stream")
	g.let("stream")
	if r := wait(t, stream); r.status != http.StatusOK || r.header.Get("X-Queue-Result") != "queued" {
		t.Errorf("stream: status %d, result %q; want 200 queued", r.status, r.header.Get("X-Queue-Result"))
	}
	g.let("poll")
	if r := wait(t, poll); r.status != http.StatusOK || r.header.Get("X-Queue-Mode") != "bypass" {
		t.Errorf("poll: status %d, mode %q; want 200 bypass", r.status, r.header.Get("X-Queue-Mode"))
	}
}

// maxHoldSite gives only /long a max_hold, so that the request let in when
// it expires cannot expire too and the counts stay exact.
func maxHoldSite(backend string) string {
	return fmt.Sprintf(`:9080 {
	header >X-Queue-Result {http.session_queue.result}
	handle /long* {
		session_queue {
			zone maxhold
			max_hold 300ms
		}
		reverse_proxy %[1]s
	}
	handle {
		session_queue {
			zone maxhold
		}
		reverse_proxy %[1]s
	}
}
`, backend)
}

// loadWithHandlerLog loads the site blocks with session_queue's warnings
// written as JSON lines to the returned file.
func loadWithHandlerLog(t *testing.T, sites string) string {
	t.Helper()
	cfgJSON, err := adaptCaddyfile(t, "1ns", sites)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "session_queue.log")
	// Added beside any log the global options configure, which go on
	// logging everything.
	logging, _ := cfg["logging"].(map[string]any)
	if logging == nil {
		logging = make(map[string]any)
		cfg["logging"] = logging
	}
	logs, _ := logging["logs"].(map[string]any)
	if logs == nil {
		logs = make(map[string]any)
		logging["logs"] = logs
	}
	logs["session_queue_warnings"] = map[string]any{
		"writer":  map[string]any{"output": "file", "filename": logFile},
		"encoder": map[string]any{"format": "json"},
		"level":   "WARN",
		"include": []string{"http.handlers.session_queue"},
	}
	if cfgJSON, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := loadConfig(cfgJSON); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	return logFile
}

// TestMaxHoldGivesUpTheTurn: a request held longer than max_hold gives its
// turn to the next request of its session while it goes on itself; the
// expiry is counted on /metrics and the admin API and logged by short hash.
// After the expiry, a client that leaves takes its upstream request along.
func TestMaxHoldGivesUpTheTurn(t *testing.T) {
	g := newGateBackend(t)
	const id = "maxhold-secret-session"
	const cookie = "PHPSESSID=" + id
	logFile := loadWithHandlerLog(t, maxHoldSite(g.URL))
	ctx := t.Context()

	long := send(ctx, "/long", cookie, "long")
	g.expectArrival(t, "long")
	next := send(ctx, "/", cookie, "next")
	g.expectArrival(t, "next") // while long is still inside
	if got := g.maxConcurrent(id); got != 2 {
		t.Fatalf("%d requests of the session inside the backend, want long and next", got)
	}
	eventually(t, "hold_expired 1 on the admin API", func() bool {
		return adminZoneNamed(t, "maxhold").HoldExpired == 1
	})
	eventually(t, "hold_expired_total 1 on /metrics", func() bool {
		return scrapeMetrics(t, adminMetricsURL).value(t, "caddy_session_queue_hold_expired_total", "zone", "maxhold") == 1
	})

	var logged map[string]any
	eventually(t, "the expiry logged", func() bool {
		data, err := os.ReadFile(logFile)
		if err != nil {
			return false
		}
		if strings.Contains(string(data), id) {
			t.Fatalf("the log carries the session ID: %s", data)
		}
		for line := range strings.Lines(string(data)) {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && strings.HasPrefix(fmt.Sprint(entry["msg"]), "max_hold elapsed") {
				logged = entry
				return true
			}
		}
		return false
	})
	if logged["session"] != idgen.Hash(id) || logged["level"] != "warn" {
		t.Errorf("expiry logged as %v; want a warning with session %q", logged, idgen.Hash(id))
	}

	g.let("next")
	if r := wait(t, next); r.status != http.StatusOK || r.header.Get("X-Queue-Result") != "queued" {
		t.Errorf("next: status %d, result %q; want 200 queued", r.status, r.header.Get("X-Queue-Result"))
	}
	g.let("long")
	if r := wait(t, long); r.status != http.StatusOK || r.body != "long" {
		t.Errorf("long: status %d, body %q; want it completed by the backend", r.status, r.body)
	}

	leaving, leave := context.WithCancel(ctx)
	defer leave()
	long2 := send(leaving, "/long", cookie, "long2")
	g.expectArrival(t, "long2")
	eventually(t, "long2's hold expired", func() bool {
		return adminZoneNamed(t, "maxhold").HoldExpired == 2
	})
	leave()
	<-long2
	select {
	case name := <-g.canceled:
		if name != "long2" {
			t.Fatalf("canceled %q, want long2", name)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("long2's upstream request went on after its client left past max_hold")
	}
}
