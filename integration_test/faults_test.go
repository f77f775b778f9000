package integration_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Faults of real backends: the queue must neither wedge nor leak when the
// backend dies, hangs or loses its session store, and must lose nothing
// when Caddy reloads or stops under sustained load.

// startBlock sends /block.php?f=name with the cookie and returns once the
// request is inside PHP, holding its session's turn, with nothing answered
// yet; the reply arrives on the channel.
func startBlock(t *testing.T, b *phpBackend, cookie, name string) <-chan reply {
	t.Helper()
	done := fetchAsync(t, 1, "/block.php?f="+name, cookie)
	eventually(t, "block.php "+name+" inside PHP", func() bool {
		_, err := os.Stat(filepath.Join(b.stateDir, "entered-"+name))
		return err == nil
	})
	return done
}

// expectIdle waits until zone has no session held or waited on.
func expectIdle(t *testing.T, zone string) {
	t.Helper()
	eventually(t, "zone "+zone+" idle", func() bool {
		z, _ := zoneStatus(t, zone)
		return z.Sessions == 0 && z.Waiting == 0
	})
}

// TestPHPFPMKilledWhileSessionHolds: php-fpm (master and workers) dies of
// SIGKILL while one request of a session is inside it and three wait. The
// one inside gets 502 as soon as its connection drops, each waiter is let
// in and gets 502 from the dead socket, no turn stays held, and once
// php-fpm is back the session is served normally.
func TestPHPFPMKilledWhileSessionHolds(t *testing.T) {
	b := startPHP(t)
	const zone = "fpmkill"
	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone "+zone+"\n}"))
	cookie := startSession(t, "/start.php", "PHPSESSID")

	holder := startBlock(t, b, cookie, "kill")
	waiters := fetchAsync(t, 3, "/incr.php", cookie)
	awaitWaiting(t, zone, 3)

	killed := time.Now()
	b.fpm.kill(t)
	r := <-holder
	t.Logf("the request inside php-fpm: %v, %v after the kill", r, time.Since(killed).Round(time.Millisecond))
	expectStatus(t, "the request inside php-fpm", r, http.StatusBadGateway)
	for i := range 3 {
		r := <-waiters
		t.Logf("waiter %d: %v, %v after the kill", i, r, time.Since(killed).Round(time.Millisecond))
		expectStatus(t, "a waiter", r, http.StatusBadGateway)
	}
	expectIdle(t, zone)

	b.startFPM(t)
	expectStatus(t, "the session after php-fpm is back", fetch(t, "/incr.php", cookie), http.StatusOK)
	if n := readCounter(t, "/read.php", cookie); n != 1 {
		t.Errorf("counter %d after php-fpm came back, want 1 (only the increment sent then)", n)
	}
	expectIdle(t, zone)
}

// TestHangingBackend: a request of a session hangs in PHP. Without
// max_hold, its session's other requests get 503 after max_wait; with
// max_hold, the next one is let in once max_hold has passed, and counted.
// Either way, when the hang ends nothing stays held.
func TestHangingBackend(t *testing.T) {
	b := startPHP(t)

	t.Run("without max_hold", func(t *testing.T) {
		const zone = "hang-nohold"
		loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone "+zone+"\n\tmax_wait 1s\n}"))
		cookie := startSession(t, "/start.php", "PHPSESSID")
		hung := startHang(t, cookie, "nohold")
		for i, r := range fetchAll(t, 2, "/incr.php", cookie) {
			t.Logf("waiter %d behind the hang: %v", i, r)
			expectStatus(t, "a waiter behind the hang", r, http.StatusServiceUnavailable)
			if r.retryAfter == "" {
				t.Errorf("a waiter behind the hang: 503 without Retry-After")
			}
		}
		b.release(t, "nohold")
		if r := <-hung; r.err != nil {
			t.Errorf("the hung request: %v", r)
		}
		expectIdle(t, zone)
		expectStatus(t, "the session after the hang", fetch(t, "/incr.php", cookie), http.StatusOK)
	})

	t.Run("with max_hold", func(t *testing.T) {
		const zone = "hang-hold"
		loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone "+zone+"\n\tmax_hold 500ms\n}"))
		cookie := startSession(t, "/start.php", "PHPSESSID")
		hung := startHang(t, cookie, "hold")
		r := fetch(t, "/incr.php", cookie)
		t.Logf("the request behind the hang: %v", r)
		expectStatus(t, "the request behind the hang", r, http.StatusOK)
		if z, _ := zoneStatus(t, zone); z.HoldExpired != 1 {
			t.Errorf("hold_expired %d, want 1", z.HoldExpired)
		}
		b.release(t, "hold")
		if r := <-hung; r.err != nil {
			t.Errorf("the hung request: %v", r)
		}
		expectIdle(t, zone)
	})
}

// TestSessionStoreDown: PHP's redis session store dies. PHP's own answer
// (its error when session_start cannot read the session) reaches the
// client as it does through plain Caddy; the session's requests are
// answered one after another and leave nothing held; once redis is back,
// new sessions work.
func TestSessionStoreDown(t *testing.T) {
	b := startPHP(t)
	loadCaddyfile(t, b.site(t, b.redisPool, ""))
	cookie := startSession(t, "/start.php", "PHPSESSID")
	b.redis.kill(t)

	statuses := func() map[int]int {
		got := map[int]int{}
		for _, r := range fetchAll(t, 4, "/incr.php", cookie) {
			if r.err != nil {
				t.Errorf("with redis down: %v", r)
				continue
			}
			got[r.status]++
		}
		return got
	}
	plain := statuses()
	const zone = "storedown"
	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone "+zone+"\n}"))
	queued := statuses()
	t.Logf("4 requests of one session with redis down: plain Caddy %v, session_queue %v", plain, queued)
	if fmt.Sprint(plain) != fmt.Sprint(queued) {
		t.Errorf("session_queue answered %v where plain Caddy answered %v", queued, plain)
	}
	expectIdle(t, zone)

	_, b.redis = startRedisProc(t, b.dir)
	fresh := startSession(t, "/start.php", "PHPSESSID")
	expectStatus(t, "a new session once redis is back", fetch(t, "/incr.php", fresh), http.StatusOK)
	expectIdle(t, zone)
}

// sustainedLoad counts the answers of a sustained load.
type sustainedLoad struct {
	mu sync.Mutex
	ok map[string]int // 200s per session cookie
	// refused503 are the documented refusals: 503 with Retry-After.
	refused503 int
	// notAccepted are connections refused: Caddy was not listening.
	notAccepted int
	// dropped are connections closed before any answer (EOF, reset):
	// during a reload in place, Caddy's old server may accept a connection
	// in the moment of the listener handover and close it unanswered (see
	// loadCaddyfileGrace). Such a request reached no handler; the counters
	// prove it never ran.
	dropped []string
	// lost are requests answered otherwise.
	lost []string
}

// sustainLoad runs workers goroutines per session, each sending
// /incr.php?t=name&ms=5 one after another on fresh connections until stop
// is closed.
func sustainLoad(t *testing.T, cookies []string, workers int, stop <-chan struct{}, progress chan<- struct{}) *sustainedLoad {
	res := &sustainedLoad{ok: map[string]int{}}
	var wg sync.WaitGroup
	c := freshClient()
	for i, cookie := range cookies {
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/incr.php?t=load-%d&ms=5", caddyAddr, i), nil)
					req.Header.Set("Cookie", cookie)
					resp, err := c.Do(req)
					res.mu.Lock()
					switch {
					case err != nil && errors.Is(err, syscall.ECONNREFUSED):
						res.notAccepted++
					case err != nil:
						res.dropped = append(res.dropped, err.Error())
					case resp.StatusCode == http.StatusOK:
						res.ok[cookie]++
					case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
						res.refused503++
					default:
						res.lost = append(res.lost, resp.Status)
					}
					res.mu.Unlock()
					if resp != nil {
						readBody(resp)
					}
					if err == nil {
						select {
						case progress <- struct{}{}:
						default:
						}
					}
					if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
						return // Caddy has stopped
					}
				}
			})
		}
	}
	t.Cleanup(wg.Wait)
	go func() { <-stop; wg.Wait(); close(progress) }()
	return res
}

// TestReloadAndShutdownUnderLoad: 8 clients keep 4 sessions busy with
// increments while Caddy reloads five times in place (changing
// max_readers, so each reload is a real one), then while it stops. No two
// requests of a session ever run together in PHP, every increment
// answered 200 is in the session's counter and no other ran, and every
// request that reached the handlers (the access log lists them) is
// answered: 200, or a 503 with Retry-After for those waiting when Caddy
// stopped. (A reload in place or a stop may drop a connection that the
// kernel accepted but no handler saw: counted and shown, and proved by the
// access log and the counters never to have run.)
func TestReloadAndShutdownUnderLoad(t *testing.T) {
	b := startPHP(t)
	const zone = "reloadload"
	// The access log tells which requests reached the site's handlers.
	accessLog := filepath.Join(t.TempDir(), "access.log")
	site := func(maxReaders int) string {
		return b.site(t, b.redisPool, fmt.Sprintf("session_queue {\n\tzone %s\n\tmax_readers %d\n}\nlog {\n\toutput file %s\n}", zone, maxReaders, accessLog))
	}
	loadCaddyfileGrace(t, "30s", site(2))
	var cookies []string
	for range 4 {
		cookies = append(cookies, startSession(t, "/start.php", "PHPSESSID"))
	}

	// awaitProgress waits for n more answered requests, so that each
	// reload and the stop happen under load, whatever the machine's speed.
	awaitProgress := func(progress <-chan struct{}, n int) {
		for range n {
			if _, ok := <-progress; !ok {
				t.Fatal("the load ended early")
			}
		}
	}
	stop := make(chan struct{})
	progress := make(chan struct{})
	res := sustainLoad(t, cookies, 2, stop, progress)
	for i := range 5 {
		awaitProgress(progress, 10)
		cfg, err := adaptCaddyfile(t, "30s", site(3+i%2))
		if err != nil {
			t.Fatal(err)
		}
		if err := reloadConfig(cfg); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	awaitProgress(progress, 10)
	close(stop)
	for range progress {
	}
	reloadOK := total(res.ok)
	t.Logf("5 reloads under load: %d answered 200, %d 503, %d lost %q; %d dropped unanswered at Caddy's listener handover %q",
		reloadOK, res.refused503, len(res.lost), res.lost, len(res.dropped), res.dropped)
	if len(res.lost) > 0 || res.refused503 > 0 {
		t.Errorf("reloads under load: %d requests answered other than 200, %d refused", len(res.lost), res.refused503)
	}

	stop = make(chan struct{})
	progress = make(chan struct{})
	stopping := sustainLoad(t, cookies, 2, stop, progress)
	awaitProgress(progress, 10)
	if err := stopCaddy(); err != nil {
		t.Fatalf("stopping Caddy: %v", err)
	}
	close(stop)
	for range progress {
	}
	t.Logf("stop under load: %d answered 200, %d 503 with Retry-After, %d not accepted, %d dropped %q, %d lost %q",
		total(stopping.ok), stopping.refused503, stopping.notAccepted, len(stopping.dropped), stopping.dropped, len(stopping.lost), stopping.lost)
	if len(stopping.lost) > 0 {
		t.Errorf("stop under load: %d requests answered other than 200 or 503", len(stopping.lost))
	}
	// Every request that reached the handlers is in the access log; each
	// must have had its answer.
	logData, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	reached := strings.Count(string(logData), `"/incr.php?t=load-`)
	answered := reloadOK + res.refused503 + total(stopping.ok) + stopping.refused503
	t.Logf("%d requests reached the handlers, %d were answered 200 or 503", reached, answered)
	if reached != answered {
		t.Errorf("%d requests reached the handlers but %d were answered: %d lost", reached, answered, reached-answered)
	}

	loadCaddyfile(t, site(2))
	for i, cookie := range cookies {
		want := res.ok[cookie] + stopping.ok[cookie]
		if n := readCounter(t, "/read.php", cookie); n != want {
			t.Errorf("session %d: counter %d, but %d increments were answered 200", i, n, want)
		}
		if tr := b.track(t, fmt.Sprintf("load-%d", i)); tr.MaxWriters != 1 {
			t.Errorf("session %d: %d increments ran in PHP at once", i, tr.MaxWriters)
		}
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// stopCaddy stops the running config as `caddy stop` does, letting the
// requests in flight finish within its grace period.
func stopCaddy() error {
	return caddy.Load([]byte(adminOnly), true)
}
