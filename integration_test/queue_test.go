package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateBackend is a Go test backend whose requests block until the test
// lets them go, one release at a time. It records which requests are inside
// it and the most of one session it ever saw at once.
type gateBackend struct {
	*httptest.Server
	arrived chan string // the X-Request-Name of each request entering
	gates   map[string]chan struct{}
	// canceled receives the name of a request whose context ended while it
	// was held: the proxy gave up on it.
	canceled chan string

	mu      sync.Mutex
	closing bool
	inside  map[string]int // session cookie value -> requests inside
	maxSeen map[string]int
}

func newGateBackend(t *testing.T) *gateBackend {
	t.Helper()
	g := &gateBackend{
		arrived:  make(chan string, 100),
		gates:    make(map[string]chan struct{}),
		canceled: make(chan string, 100),
		inside:   make(map[string]int),
		maxSeen:  make(map[string]int),
	}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session := ""
		if c, err := r.Cookie("PHPSESSID"); err == nil {
			session = c.Value
		}
		g.mu.Lock()
		g.inside[session]++
		g.maxSeen[session] = max(g.maxSeen[session], g.inside[session])
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.inside[session]--
			g.mu.Unlock()
		}()
		name := r.Header.Get("X-Request-Name")
		g.arrived <- name
		select {
		case <-g.gate(name):
			fmt.Fprint(w, name)
		case <-r.Context().Done():
			g.canceled <- name
		}
	}))
	t.Cleanup(func() {
		// A test that failed may leave requests held; let them all go, or
		// Close would wait for them forever.
		g.mu.Lock()
		g.closing = true
		for _, ch := range g.gates {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		g.mu.Unlock()
		g.Close()
	})
	return g
}

// gate is the channel the named request waits on inside the backend.
func (g *gateBackend) gate(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch, ok := g.gates[name]
	if !ok {
		ch = make(chan struct{})
		if g.closing {
			close(ch)
		}
		g.gates[name] = ch
	}
	return ch
}

// let lets the named request finish, now or when it arrives.
func (g *gateBackend) let(name string) {
	ch := g.gate(name)
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// maxConcurrent is the most requests of session the backend ran at once.
func (g *gateBackend) maxConcurrent(session string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maxSeen[session]
}

// expectArrival fails unless the named request (any, when name is "")
// enters the backend within a generous bound.
func (g *gateBackend) expectArrival(t *testing.T, name string) string {
	t.Helper()
	select {
	case got := <-g.arrived:
		if name != "" && got != name {
			t.Fatalf("request %q reached the backend, want %q", got, name)
		}
		return got
	case <-time.After(30 * time.Second):
		t.Fatalf("request %q never reached the backend", name)
		return ""
	}
}

// result is one finished request.
type result struct {
	name   string
	status int
	body   string
	header http.Header
	err    error
}

// send issues a GET for path carrying cookie, named for the backend, in a
// goroutine; its result arrives on the returned channel.
func send(ctx context.Context, path, cookie, name string) <-chan result {
	return sendWith(ctx, path, cookie, name, nil)
}

// freshClient opens a new connection per request, so a request never waits
// behind another on a kept-alive connection and a reload never finds a
// stale one.
func freshClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: recording(&http.Transport{DisableKeepAlives: true})}
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("request %s: %v", r.name, r.err)
		}
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("request never answered")
		return result{}
	}
}

// zoneWaiting asks the admin API how many requests wait in zone.
func zoneWaiting(t *testing.T, zone string) int {
	t.Helper()
	z, _ := zoneStatus(t, zone)
	return z.Waiting
}

// zoneStatus returns the admin API's entry for zone, and whether there is
// one.
func zoneStatus(t *testing.T, zone string) (adminZone, bool) {
	t.Helper()
	var zones []adminZone
	adminGet(t, "/session_queue/zones", &zones)
	for _, z := range zones {
		if z.Zone == zone {
			return z, true
		}
	}
	return adminZone{}, false
}

// adminGet decodes the JSON the admin API answers for path into v. Every
// config load restarts the admin endpoint, so a connection refused or reset
// in that moment is tried again.
func adminGet(t *testing.T, path string, v any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := freshClient().Get("http://localhost:2999" + path)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(v)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("admin API %s: %v", path, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API %s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitWaiting blocks until exactly n requests wait in zone: the queue's
// state, not the clock, tells the test that a request has its place.
func awaitWaiting(t *testing.T, zone string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := zoneWaiting(t, zone); got != n; got = zoneWaiting(t, zone) {
		if time.Now().After(deadline) {
			t.Fatalf("zone %s: %d requests waiting, want %d", zone, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queuedSite is a site with session_queue in front of backend; the deferred
// header exposes the placeholders to the test.
func queuedSite(backend, options string) string {
	return fmt.Sprintf(`:9080 {
	header >X-Queue-Result {http.session_queue.result}
	header >X-Queue-Mode {http.session_queue.mode}
	header >X-Queue-Session {http.session_queue.session}
	handle_errors 429 503 {
		header X-Queue-Result {http.session_queue.result}
		respond "session_queue refused: {err.status_code}" {err.status_code}
	}
	session_queue {
		%s
	}
	reverse_proxy %s
}
`, options, backend)
}

func plainSite(backend string) string {
	return fmt.Sprintf(":9080 {\n\treverse_proxy %s\n}\n", backend)
}

func TestWritersAreExclusive(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=writer-session"

	// Without the module, all three requests of the session are inside the
	// backend together.
	loadCaddyfile(t, plainSite(g.URL))
	var plain []<-chan result
	for i := range 3 {
		plain = append(plain, send(t.Context(), "/", cookie, fmt.Sprint("plain-", i)))
	}
	for range 3 {
		g.expectArrival(t, "")
	}
	if got := g.maxConcurrent("writer-session"); got != 3 {
		t.Fatalf("plain: %d requests of the session ran together, want 3", got)
	}
	for i, ch := range plain {
		g.let(fmt.Sprint("plain-", i))
		wait(t, ch)
	}

	// With it, they run one after the other.
	loadCaddyfile(t, queuedSite(g.URL, "zone exclusive"))
	g.mu.Lock()
	g.maxSeen = map[string]int{}
	g.mu.Unlock()
	first := send(t.Context(), "/", cookie, "first")
	g.expectArrival(t, "first")
	second := send(t.Context(), "/", cookie, "second")
	awaitWaiting(t, "exclusive", 1)
	third := send(t.Context(), "/", cookie, "third")
	awaitWaiting(t, "exclusive", 2)
	// Another session is not held up by this one.
	other := send(t.Context(), "/", "PHPSESSID=someone-else", "other")
	g.expectArrival(t, "other")
	g.let("other")
	wait(t, other)

	results := []result{}
	for i, name := range []string{"first", "second", "third"} {
		if i > 0 {
			g.expectArrival(t, name) // the next one enters only now
		}
		g.let(name)
		results = append(results, wait(t, []<-chan result{first, second, third}[i]))
	}
	if got := g.maxConcurrent("writer-session"); got != 1 {
		t.Fatalf("with session_queue: %d requests of the session ran together, want 1", got)
	}
	wantResults := []string{"immediate", "queued", "queued"}
	for i, r := range results {
		if r.status != http.StatusOK || r.header.Get("X-Queue-Result") != wantResults[i] || r.header.Get("X-Queue-Mode") != "writer" {
			t.Errorf("%s: status %d, result %q, mode %q; want 200, %q, writer", r.name, r.status,
				r.header.Get("X-Queue-Result"), r.header.Get("X-Queue-Mode"), wantResults[i])
		}
		if h := r.header.Get("X-Queue-Session"); len(h) != 12 || strings.Contains(h, "writer-session") {
			t.Errorf("%s: session placeholder %q is not a 12-character hash", r.name, h)
		}
	}
}

func TestReadersShareUpToMaxReaders(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=reader-session"
	loadCaddyfile(t, queuedSite(g.URL, `zone readers
		read_only path /read
		max_readers 2`))

	r1 := send(t.Context(), "/read", cookie, "r1")
	r2 := send(t.Context(), "/read", cookie, "r2")
	g.expectArrival(t, "")
	g.expectArrival(t, "")
	r3 := send(t.Context(), "/read", cookie, "r3")
	awaitWaiting(t, "readers", 1) // a third reader is one too many
	w := send(t.Context(), "/write", cookie, "w")
	awaitWaiting(t, "readers", 2)
	r4 := send(t.Context(), "/read", cookie, "r4")
	awaitWaiting(t, "readers", 3) // behind the writer, though a reader slot will be free

	g.let("r1")
	first := wait(t, r1)
	g.expectArrival(t, "r3") // r3 takes the freed reader slot; w and r4 still wait
	awaitWaiting(t, "readers", 2)
	g.let("r2")
	second := wait(t, r2)
	awaitWaiting(t, "readers", 2) // the writer waits for r3 too
	g.let("r3")
	third := wait(t, r3)
	g.expectArrival(t, "w")
	awaitWaiting(t, "readers", 1)
	g.let("w")
	writer := wait(t, w)
	g.expectArrival(t, "r4")
	g.let("r4")
	last := wait(t, r4)

	if got := g.maxConcurrent("reader-session"); got != 2 {
		t.Fatalf("%d requests of the session ran together, want max_readers = 2", got)
	}
	for _, r := range []result{first, second, third, last} {
		if r.status != http.StatusOK || r.header.Get("X-Queue-Mode") != "reader" {
			t.Errorf("%s: status %d mode %q, want 200 reader", r.name, r.status, r.header.Get("X-Queue-Mode"))
		}
	}
	if writer.header.Get("X-Queue-Mode") != "writer" {
		t.Errorf("w: mode %q, want writer", writer.header.Get("X-Queue-Mode"))
	}
}

func TestRequestsRunInArrivalOrder(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=fifo-session"
	loadCaddyfile(t, queuedSite(g.URL, "zone fifo"))

	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	var queued []<-chan result
	for i := 1; i <= 6; i++ {
		queued = append(queued, send(t.Context(), "/", cookie, fmt.Sprint("n", i)))
		awaitWaiting(t, "fifo", i) // n(i) has its place before n(i+1) is sent
	}
	g.let("holder")
	wait(t, holder)
	for i, ch := range queued {
		g.expectArrival(t, fmt.Sprint("n", i+1))
		g.let(fmt.Sprint("n", i+1))
		wait(t, ch)
	}
}

func TestQueueFullIs429(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=busy-session"
	loadCaddyfile(t, queuedSite(g.URL, `zone full
		max_waiting 2
		retry_after 3s`))

	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	a := send(t.Context(), "/", cookie, "a")
	awaitWaiting(t, "full", 1)
	b := send(t.Context(), "/", cookie, "b")
	awaitWaiting(t, "full", 2)
	refused := wait(t, send(t.Context(), "/", cookie, "refused"))
	if refused.status != http.StatusTooManyRequests || refused.header.Get("Retry-After") != "3" {
		t.Fatalf("third waiter: status %d, Retry-After %q; want 429, 3", refused.status, refused.header.Get("Retry-After"))
	}
	if got := refused.header.Get("X-Queue-Result"); got != "rejected_full" || refused.body != "session_queue refused: 429" {
		t.Errorf("result placeholder %q, body %q; want rejected_full from handle_errors", got, refused.body)
	}
	for i, name := range []string{"holder", "a", "b"} {
		if i > 0 {
			g.expectArrival(t, name)
		}
		g.let(name)
		if r := wait(t, []<-chan result{holder, a, b}[i]); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r.name, r.status)
		}
	}
}

func TestMaxWaitIs503(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=slow-session"
	loadCaddyfile(t, queuedSite(g.URL, `zone timeout
		max_wait 200ms`))

	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	// The holder is held until the test lets it go, so the waiter's
	// max_wait always runs out first.
	late := wait(t, send(t.Context(), "/", cookie, "late"))
	if late.status != http.StatusServiceUnavailable || late.header.Get("Retry-After") != "1" {
		t.Fatalf("waiter: status %d, Retry-After %q; want 503, 1", late.status, late.header.Get("Retry-After"))
	}
	if got := late.header.Get("X-Queue-Result"); got != "rejected_timeout" || late.body != "session_queue refused: 503" {
		t.Errorf("result placeholder %q, body %q; want rejected_timeout from handle_errors", got, late.body)
	}
	awaitWaiting(t, "timeout", 0) // it left the queue
	g.let("holder")
	wait(t, holder)
	// The session works again.
	again := send(t.Context(), "/", cookie, "again")
	g.expectArrival(t, "again")
	g.let("again")
	if r := wait(t, again); r.status != http.StatusOK {
		t.Fatalf("after the holder finished: status %d, want 200", r.status)
	}
}

func TestRequestsWithoutSessionPassThrough(t *testing.T) {
	g := newGateBackend(t)
	loadCaddyfile(t, queuedSite(g.URL, "zone bypass"))
	// No cookie, an empty one, a malformed one and an oversized one: none of
	// them is queued, so all four are inside the backend together.
	cookies := []string{"", "PHPSESSID=", "PHPSESSID=bad<value>", "PHPSESSID=" + strings.Repeat("x", 300)}
	var all []<-chan result
	for i, c := range cookies {
		all = append(all, send(t.Context(), "/", c, fmt.Sprint("c", i)))
	}
	for range cookies {
		g.expectArrival(t, "")
	}
	for i, ch := range all {
		g.let(fmt.Sprint("c", i))
		r := wait(t, ch)
		if r.status != http.StatusOK || r.header.Get("X-Queue-Mode") != "bypass" {
			t.Errorf("%s: status %d mode %q, want 200 bypass", r.name, r.status, r.header.Get("X-Queue-Mode"))
		}
	}
	// The two that carried an unusable ID are never passed on silently.
	if z := adminZoneNamed(t, "bypass"); z.Unqueued["bad_characters"] != 1 || z.Unqueued["too_long"] != 1 {
		t.Errorf("admin API unqueued = %v, want bad_characters 1 and too_long 1", z.Unqueued)
	}
	if !logContains(t, `"reason":"too_long"`) || !logContains(t, `"reason":"bad_characters"`) {
		t.Error("no WARN line about the unqueued requests in Caddy's log")
	}
}

// logContains reports whether Caddy's log has a line containing s.
func logContains(t *testing.T, s string) bool {
	t.Helper()
	data, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatalf("reading Caddy's log: %v", err)
	}
	return strings.Contains(string(data), s)
}

func TestDuplicateCookieFirstValueWins(t *testing.T) {
	g := newGateBackend(t)
	loadCaddyfile(t, queuedSite(g.URL, "zone duplicate"))

	holdA := send(t.Context(), "/", "PHPSESSID=aaa", "hold-a")
	g.expectArrival(t, "hold-a")
	// Keyed on the first value, aaa: it waits behind hold-a...
	dup := send(t.Context(), "/", "PHPSESSID=aaa; PHPSESSID=bbb", "dup")
	awaitWaiting(t, "duplicate", 1)
	// ...while session bbb is free.
	b := send(t.Context(), "/", "PHPSESSID=bbb", "b")
	g.expectArrival(t, "b")
	g.let("b")
	wait(t, b)
	g.let("hold-a")
	wait(t, holdA)
	g.expectArrival(t, "dup")
	g.let("dup")
	wait(t, dup)
}

// TestDisconnectDoesNotFreeTurn: a client that gives up while its request is
// inside the backend must not let the next request of its session in; the
// backend is still working on the first.
func TestDisconnectDoesNotFreeTurn(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=leaving-session"

	// Without the module, the proxy abandons the upstream request as soon
	// as the client leaves.
	loadCaddyfile(t, plainSite(g.URL))
	ctx, leave := context.WithCancel(t.Context())
	gone := send(ctx, "/", cookie, "gone")
	g.expectArrival(t, "gone")
	leave()
	<-gone
	select {
	case name := <-g.canceled:
		if name != "gone" {
			t.Fatalf("canceled %q", name)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("plain: the upstream request was not canceled when the client left")
	}

	loadCaddyfile(t, queuedSite(g.URL, "zone disconnect"))
	ctx, leave = context.WithCancel(t.Context())
	gone = send(ctx, "/", cookie, "gone")
	g.expectArrival(t, "gone")
	next := send(t.Context(), "/", cookie, "next")
	awaitWaiting(t, "disconnect", 1)
	leave()
	<-gone
	// The plain half showed that a disconnect reaches the backend within
	// moments; give it ample time to do harm here too.
	select {
	case name := <-g.canceled:
		t.Fatalf("with session_queue: upstream request %q was canceled when its client left", name)
	case name := <-g.arrived:
		t.Fatalf("with session_queue: %q entered while the first request was still running", name)
	case <-time.After(time.Second):
	}
	if got := zoneWaiting(t, "disconnect"); got != 1 {
		t.Fatalf("%d waiting after the disconnect, want 1", got)
	}
	g.let("gone") // the backend finishes the abandoned request
	g.expectArrival(t, "next")
	g.let("next")
	if r := wait(t, next); r.status != http.StatusOK {
		t.Fatalf("next: status %d", r.status)
	}
}

// TestWaiterThatLeavesIsDropped: a client that gives up while queued leaves
// the queue at once and the backend never sees its request.
func TestWaiterThatLeavesIsDropped(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=impatient-session"
	loadCaddyfile(t, queuedSite(g.URL, "zone leaving"))
	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	ctx, leave := context.WithCancel(t.Context())
	impatient := send(ctx, "/", cookie, "impatient")
	awaitWaiting(t, "leaving", 1)
	leave()
	<-impatient
	awaitWaiting(t, "leaving", 0)
	after := send(t.Context(), "/", cookie, "after")
	awaitWaiting(t, "leaving", 1)
	g.let("holder")
	wait(t, holder)
	g.expectArrival(t, "after") // not "impatient"
	g.let("after")
	wait(t, after)
}

// TestReloadKeepsQueue reloads the config while one request of a session
// is inside the backend and another waits: the waiter keeps its place, and a
// request arriving through the new config queues behind both.
func TestReloadKeepsQueue(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=reload-session"
	loadCaddyfileGrace(t, "1m", queuedSite(g.URL, "zone reload"))

	held := send(t.Context(), "/", cookie, "held")
	g.expectArrival(t, "held")
	waiting := send(t.Context(), "/", cookie, "waiting")
	awaitWaiting(t, "reload", 1)

	// Reload aside: whether caddy.Load returns before the old server has
	// drained its requests is Caddy's business (2.11.9 does not wait on a
	// reload, only on exit), and the test must go on either way.
	reloaded := make(chan error, 1)
	go func() {
		cfg, err := adaptCaddyfile(t, "1m", queuedSite(g.URL, "zone reload\n\t\tmax_waiting 10"))
		if err == nil {
			err = reloadConfig(cfg)
		}
		reloaded <- err
	}()
	awaitMaxWaiting(t, "reload", 10) // the new config is provisioned
	// A connection made during the listener's handover may be closed
	// unanswered by the old server (see loadCaddyfileGrace); such a request
	// never reached the handler, so sending it again is safe.
	var late <-chan result
	for attempt := 0; ; attempt++ {
		late = send(t.Context(), "/", cookie, "late")
		if zoneWaitingOrDone(t, "reload", 2, late) {
			break
		}
		if attempt == 5 {
			t.Fatal("the request through the reloaded config never queued")
		}
	}

	g.let("held")
	g.expectArrival(t, "waiting")
	g.let("waiting")
	g.expectArrival(t, "late")
	g.let("late")
	for _, ch := range []<-chan result{held, waiting, late} {
		if r := wait(t, ch); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r.name, r.status)
		}
	}
	if got := g.maxConcurrent("reload-session"); got != 1 {
		t.Fatalf("%d requests of the session ran together across the reload, want 1", got)
	}
	if err := <-reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// zoneWaitingOrDone waits until n requests wait in zone (true) or the
// request ch has already failed (false).
func zoneWaitingOrDone(t *testing.T, zone string, n int, ch <-chan result) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for zoneWaiting(t, zone) != n {
		select {
		case r := <-ch:
			if r.err == nil {
				t.Fatalf("%s answered %d instead of queueing", r.name, r.status)
			}
			t.Logf("%s failed during the handover, sending again: %v", r.name, r.err)
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone %s: never %d requests waiting", zone, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// awaitMaxWaiting blocks until the admin API reports max_waiting n for zone.
func awaitMaxWaiting(t *testing.T, zone string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for z, _ := zoneStatus(t, zone); z.MaxWaiting != n; z, _ = zoneStatus(t, zone) {
		if time.Now().After(deadline) {
			t.Fatalf("zone %s never reported max_waiting %d: %+v", zone, n, z)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConfigErrorsNameTheOption(t *testing.T) {
	tests := map[string]string{
		"max_readers 0":                    "session_queue: max_readers: must be at least 1",
		"max_waiting lots":                 "session_queue: max_waiting: invalid number",
		"max_wait soon":                    "session_queue: max_wait: invalid duration",
		"retry_after -1s":                  "session_queue: retry_after: must not be negative",
		"cookies":                          "session_queue: cookies: needs at least one name",
		"cookies bad;name":                 "session_queue: cookies: invalid cookie name",
		"zone a b":                         "session_queue: zone: takes one argument",
		"read_only @nowhere":               "session_queue: read_only",
		"max_readers 2\n\t\tmax_readers 3": "session_queue: max_readers: specified more than once",
		"queue_depth 3":                    `session_queue: unrecognized option "queue_depth"`,
	}
	for options, want := range tests {
		err := loadError(t, queuedSite("127.0.0.1:1", options))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got error %v, want one containing %q", options, err, want)
		}
	}
}

// TestDefaultMaxWaitingHoldsOnePage: one browser may keep 250 requests of
// one session in flight on an HTTP/2 connection (Go's and so Caddy's
// default stream limit), and PHP's own files lock serves them all, slowly.
// Under the default max_waiting none of them may be refused.
func TestDefaultMaxWaitingHoldsOnePage(t *testing.T) {
	g := newGateBackend(t)
	const cookie = "PHPSESSID=one-page-of-requests"
	const inFlight = 250
	loadCaddyfile(t, queuedSite(g.URL, "zone page"))

	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	others := make(chan result, inFlight-1)
	for i := range inFlight - 1 {
		go func() { others <- <-send(t.Context(), "/", cookie, fmt.Sprintf("r%d", i)) }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for waiting := zoneWaiting(t, "page"); waiting != inFlight-1; waiting = zoneWaiting(t, "page") {
		select {
		case r := <-others:
			t.Fatalf("with %d requests waiting, request %s was answered before its turn: %d %q", waiting, r.name, r.status, r.body)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting, want %d", waiting, inFlight-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.let("holder")
	if r := wait(t, holder); r.status != http.StatusOK {
		t.Fatalf("holder: %d", r.status)
	}
	for range inFlight - 1 {
		g.let(g.expectArrival(t, ""))
		if r := wait(t, others); r.status != http.StatusOK {
			t.Errorf("request %s: %d %q, want 200", r.name, r.status, r.body)
		}
	}
	if n := g.maxConcurrent("one-page-of-requests"); n != 1 {
		t.Errorf("%d requests of the session ran at once, want 1", n)
	}
}
