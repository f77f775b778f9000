package integration_test

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lostUpdateRequests is how many concurrent increments the lost-update
// tests send to one session, under the default max_waiting (with the old
// default of 32, 17 of them were refused).
const lostUpdateRequests = 50

// incrementRace starts a session with start (a script that zeroes the
// counter), sends n concurrent increments to incr, and returns the replies
// and the counter read back from read afterwards.
func incrementRace(t *testing.T, start, incr, read, cookieName string, n int) ([]reply, int) {
	t.Helper()
	cookie := startSession(t, start, cookieName)
	replies := fetchAll(t, n, incr, cookie)
	return replies, readCounter(t, read, cookie)
}

// readCounter GETs a script that prints the session counter.
func readCounter(t *testing.T, path, cookie string) int {
	t.Helper()
	r := fetch(t, path, cookie)
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET %s: %v", path, r)
	}
	n, err := strconv.Atoi(strings.TrimSpace(r.body))
	if err != nil {
		t.Fatalf("GET %s: counter %q: %v", path, r.body, err)
	}
	return n
}

// checkSerialIncrements asserts that the replies of n increments are all
// 200 and carry the values 1..n, each once: each increment saw the one
// before it, so none ran beside another.
func checkSerialIncrements(t *testing.T, replies []reply, n int) {
	t.Helper()
	var values []int
	for _, r := range replies {
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("increment: %v", r)
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(r.body))
		if err != nil {
			t.Errorf("increment: bad body %q", r.body)
			continue
		}
		values = append(values, v)
	}
	sort.Ints(values)
	for i, v := range values {
		if v != i+1 {
			t.Errorf("increment replies are not 1..%d each once: %v", n, values)
			break
		}
	}
	if len(values) != n {
		t.Errorf("%d of %d increments answered 200 with a value", len(values), n)
	}
}

// TestPHPRedisLostUpdates: phpredis ships with session locking off, so
// concurrent requests of one session read the same data and the last write
// wins. session_queue must make every increment count.
func TestPHPRedisLostUpdates(t *testing.T) {
	b := startPHP(t)

	loadCaddyfile(t, b.site(t, b.redisPool, ""))
	_, plain := incrementRace(t, "/start.php", "/incr.php", "/read.php", "PHPSESSID", lostUpdateRequests)
	t.Logf("plain Caddy: counter %d after %d concurrent increments", plain, lostUpdateRequests)
	if plain >= lostUpdateRequests {
		t.Fatalf("plain Caddy: counter %d, want < %d: the backend did not lose updates, so this test proves nothing", plain, lostUpdateRequests)
	}

	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue"))
	replies, queued := incrementRace(t, "/start.php", "/incr.php", "/read.php", "PHPSESSID", lostUpdateRequests)
	t.Logf("session_queue: counter %d after %d concurrent increments", queued, lostUpdateRequests)
	checkSerialIncrements(t, replies, lostUpdateRequests)
	if queued != lostUpdateRequests {
		t.Errorf("session_queue: counter %d, want %d", queued, lostUpdateRequests)
	}
}

// TestPHPFilesWorkerStarvation: the files handler serializes one session
// with flock, but each waiting request parks an FPM worker, so one user's
// burst starves everybody else. session_queue keeps the burst in Caddy and
// leaves the workers free for other sessions.
func TestPHPFilesWorkerStarvation(t *testing.T) {
	b := startPHP(t)

	// A's requests are all inside the backend (in a worker or in the pool's
	// listen queue) once A's first reply is back, 500 ms after they were
	// sent. Plain: B then queues behind A's remaining requests, and is
	// answered after about 9 of A's 12 (4 workers, one free every 500 ms).
	// With session_queue only one A request is in a worker at a time, so B
	// gets a free worker at once, about 500 ms before A's next reply.
	// Half of A's requests is a bound with seconds of margin both ways.
	const burst = 12
	const half = burst / 2

	loadCaddyfile(t, b.site(t, b.filesPool, ""))
	before := starvation(t, burst)
	t.Logf("plain Caddy: B answered after %d of A's %d replies", before, burst)
	if before < half {
		t.Fatalf("plain Caddy: B answered after %d of A's %d replies, want >= %d: A's burst did not starve the pool, so this test proves nothing", before, burst, half)
	}

	loadCaddyfile(t, b.site(t, b.filesPool, "session_queue"))
	before = starvation(t, burst)
	t.Logf("session_queue: B answered after %d of A's %d replies", before, burst)
	if before >= half {
		t.Errorf("session_queue: B answered after %d of A's %d replies, want < %d: B waited behind A's requests", before, burst, half)
	}
}

// starvation sends a burst of slow requests of session A, then, once A's
// first reply is in, one fast request of session B, and returns how many of
// A's replies came before B's.
func starvation(t *testing.T, burst int) int {
	t.Helper()
	a := startSession(t, "/start.php", "PHPSESSID")
	bCookie := startSession(t, "/start.php", "PHPSESSID")

	var (
		mu     sync.Mutex
		aDone  int     // A's replies so far
		aFails []reply // A's replies other than 200
		wg     sync.WaitGroup
	)
	firstA := make(chan struct{})
	var closeFirstA sync.Once
	for range burst {
		wg.Go(func() {
			r := fetch(t, "/slow.php", a)
			mu.Lock()
			aDone++
			if r.err != nil || r.status != http.StatusOK {
				aFails = append(aFails, r)
			}
			mu.Unlock()
			closeFirstA.Do(func() { close(firstA) })
		})
	}
	<-firstA
	r := fetch(t, "/fast.php", bCookie)
	mu.Lock()
	before := aDone
	mu.Unlock()
	wg.Wait()
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("B's request: %v", r)
	}
	for _, f := range aFails {
		t.Errorf("A's request: %v", f)
	}
	return before
}

// TestPHPParallelReads: requests marked read_only share the session's turn,
// up to max_readers, while increments still run alone and none is lost.
func TestPHPParallelReads(t *testing.T) {
	b := startPHP(t)
	const readers = 4
	const increments = 20
	// Long enough that readers admitted together surely overlap in the
	// backend, short enough that serialized readers cost little.
	const readPath = "/read.php?ms=300&t="

	// Plain Caddy overlaps everything, including writers, so the tracker
	// must see a writer beside other requests and lost updates: this shows
	// that the tracker detects overlap at all.
	loadCaddyfile(t, b.site(t, b.redisPool, ""))
	cookie := startSession(t, "/start.php", "PHPSESSID")
	mixed(t, cookie, readPath+"plain", "/incr.php?t=plain", readers, increments)
	tr := b.track(t, "plain")
	final := readCounter(t, "/read.php", cookie)
	t.Logf("plain Caddy: %+v, counter %d after %d increments", tr, final, increments)
	if tr.MaxWithWriter < 2 || final >= increments {
		t.Fatalf("plain Caddy: want a writer beside other requests and a lost update, got %+v and counter %d of %d: this test proves nothing", tr, final, increments)
	}

	// session_queue without read_only: every request is a writer, so the
	// reads run one at a time. This shows that read_only is what lets them
	// overlap below.
	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue"))
	cookie = startSession(t, "/start.php", "PHPSESSID")
	for _, r := range fetchAll(t, readers, readPath+"serial", cookie) {
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("read without read_only: %v", r)
		}
	}
	if tr := b.track(t, "serial"); tr.MaxReaders != 1 {
		t.Errorf("session_queue without read_only: %d reads overlapped, want 1", tr.MaxReaders)
	}

	loadCaddyfile(t, b.site(t, b.redisPool, `session_queue {
	read_only path /read.php
	max_readers 4
}`))
	cookie = startSession(t, "/start.php", "PHPSESSID")
	checkSerialIncrements(t, mixed(t, cookie, readPath+"ro", "/incr.php?t=ro", readers, increments), increments)
	tr = b.track(t, "ro")
	final = readCounter(t, "/read.php", cookie)
	t.Logf("session_queue with read_only: %+v, counter %d after %d increments", tr, final, increments)
	if tr.MaxReaders != readers {
		t.Errorf("session_queue with read_only: at most %d reads overlapped, want %d", tr.MaxReaders, readers)
	}
	if tr.MaxWithWriter != 1 {
		t.Errorf("session_queue with read_only: a writer ran beside %d other requests, want alone", tr.MaxWithWriter-1)
	}
	if final != increments {
		t.Errorf("session_queue with read_only: counter %d, want %d", final, increments)
	}
}

// mixed sends readers concurrent reads of one session and, once all of them
// have started (read.php sends its first line before it lingers), the given
// number of concurrent increments together with as many more reads. Sending
// the increments only then puts the first reads next to each other in the
// session's queue. It returns the increments' replies.
func mixed(t *testing.T, cookie, readPath, incrPath string, readers, increments int) []reply {
	t.Helper()
	var wg sync.WaitGroup
	started := make(chan struct{}, readers)
	readErrs := make(chan reply, 2*readers)
	read := func(signal bool) {
		resp, err := get(t, readPath, cookie)
		if signal {
			started <- struct{}{}
		}
		if err != nil {
			readErrs <- reply{err: err}
			return
		}
		if resp.StatusCode != http.StatusOK {
			readErrs <- reply{status: resp.StatusCode, body: readBody(resp)}
			return
		}
		readBody(resp)
	}
	for range readers {
		wg.Go(func() { read(true) })
	}
	for range readers {
		<-started
	}
	for range readers {
		wg.Go(func() { read(false) })
	}
	replies := fetchAll(t, increments, incrPath, cookie)
	wg.Wait()
	close(readErrs)
	for r := range readErrs {
		t.Errorf("read: %v", r)
	}
	return replies
}

// TestPHPLimits: a request that hangs with the session open. Plain, the
// requests behind it simply wait as long as it hangs, each parking an FPM
// worker. With session_queue they wait in Caddy, bounded by max_waiting (429)
// and max_wait (503), both with Retry-After, and the session works again
// once the hanging request ends.
func TestPHPLimits(t *testing.T) {
	b := startPHP(t)
	const behind = 6

	// Plain: none of the requests behind the hanging one is answered, not
	// even after twice the max_wait used below.
	loadCaddyfile(t, b.site(t, b.filesPool, ""))
	cookie := startSession(t, "/start.php", "PHPSESSID")
	hang := startHang(t, cookie, "plain")
	waiting := fetchAsync(t, behind, "/fast.php", cookie)
	select {
	case r := <-waiting:
		t.Fatalf("plain Caddy: a request behind the hanging one was answered: %v", r)
	case <-time.After(2 * time.Second):
	}
	b.release(t, "plain")
	expectStatus(t, "plain Caddy: hanging request", <-hang, http.StatusOK)
	for range behind {
		expectStatus(t, "plain Caddy: request behind the hanging one", <-waiting, http.StatusOK)
	}

	// max_waiting: with 2 allowed to wait, of `behind` requests the others
	// are refused at once with 429, while the hanging request still runs.
	loadCaddyfile(t, b.site(t, b.filesPool, `session_queue {
	max_waiting 2
	max_wait 30s
	retry_after 2s
}`))
	cookie = startSession(t, "/start.php", "PHPSESSID")
	hang = startHang(t, cookie, "full")
	waiting = fetchAsync(t, behind, "/fast.php", cookie)
	for range behind - 2 {
		r := <-waiting
		expectStatus(t, "session_queue: request beyond max_waiting", r, http.StatusTooManyRequests)
		if r.retryAfter != "2" {
			t.Errorf("session_queue: 429 with Retry-After %q, want \"2\"", r.retryAfter)
		}
	}
	b.release(t, "full")
	expectStatus(t, "session_queue: hanging request", <-hang, http.StatusOK)
	for range 2 {
		expectStatus(t, "session_queue: request within max_waiting", <-waiting, http.StatusOK)
	}

	// max_wait: the requests behind the hanging one give up after 1s with
	// 503, while it still runs; once it ends, the session works again.
	loadCaddyfile(t, b.site(t, b.filesPool, `session_queue {
	max_wait 1s
}`))
	cookie = startSession(t, "/start.php", "PHPSESSID")
	hang = startHang(t, cookie, "slow")
	waiting = fetchAsync(t, 2, "/fast.php", cookie)
	for range 2 {
		r := <-waiting
		expectStatus(t, "session_queue: request past max_wait", r, http.StatusServiceUnavailable)
		if r.retryAfter != "1" {
			t.Errorf("session_queue: 503 with Retry-After %q, want \"1\" (the default retry_after)", r.retryAfter)
		}
	}
	b.release(t, "slow")
	expectStatus(t, "session_queue: hanging request", <-hang, http.StatusOK)
	expectStatus(t, "session_queue: request after the hanging one ended", fetch(t, "/fast.php", cookie), http.StatusOK)
}

// startHang sends a hang.php request (released by b.release(name)) and
// returns once it is inside the backend holding the session; its final
// reply arrives on the returned channel.
func startHang(t *testing.T, cookie, name string) <-chan reply {
	t.Helper()
	resp, err := get(t, "/hang.php?f="+name, cookie)
	if err != nil {
		t.Fatalf("hang.php: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("hang.php: %d %s", resp.StatusCode, readBody(resp))
	}
	done := make(chan reply, 1)
	go func() {
		r := reply{status: resp.StatusCode, body: readBody(resp)}
		if r.body != "started\nreleased\n" {
			r.err = fmt.Errorf("hang.php ended with %q", r.body)
		}
		done <- r
	}()
	return done
}

// fetchAsync sends n concurrent GETs and delivers each reply on the
// returned channel as it arrives.
func fetchAsync(t *testing.T, n int, path, cookie string) <-chan reply {
	out := make(chan reply, n)
	for range n {
		go func() { out <- fetch(t, path, cookie) }()
	}
	return out
}

func expectStatus(t *testing.T, what string, r reply, status int) {
	t.Helper()
	if r.err != nil || r.status != status {
		t.Errorf("%s: %v, want status %d", what, r, status)
	}
}
