package integration_test

import (
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Redis faults under cluster mode: redis-server stopped, or killed and
// restarted empty, while a session is busy on the instance holding its
// lease and other sessions keep arriving on both instances.

// Timings of cluster/cluster.go that the bounds below derive from.
const (
	// clusterBreaker: after a failed call, an instance refuses at once,
	// without asking Redis, for this long.
	clusterBreaker = 250 * time.Millisecond
	// clusterProbe: a degraded instance pings Redis this often.
	clusterProbe = 2 * clusterBreaker
)

// leaseTimings are what cluster/cluster.go derives from lease_ttl and
// op_timeout.
type leaseTimings struct{ leaseTTL, opTimeout time.Duration }

// renewEvery is the renewal period.
func (l leaseTimings) renewEvery() time.Duration { return l.leaseTTL / 3 }

// margin: an instance counts a lease valid until lease_ttl - margin after
// it sent the last renewal that succeeded.
func (l leaseTimings) margin() time.Duration { return max(l.opTimeout, l.leaseTTL/10) }

// grace: after a Redis that lost its data first runs a script, instances
// that knew it before get no new lease for this long.
func (l leaseTimings) grace() time.Duration { return 2*l.opTimeout + clusterProbe }

// recovery bounds the time from Redis answering again to the first 200 of
// a session refused meanwhile. The last call that failed may end up to
// op_timeout after Redis answers again (it was sent before); the breaker
// then refuses for its window; the next request asks Redis. The probe
// period is slack for the gauge's own recovery and for a loaded machine:
// the sum, 1 s at the default op_timeout, is the promise "within a
// second". A Redis that lost its data adds the grace, counted from the
// first script it runs, which comes within the same op_timeout + breaker.
func (l leaseTimings) recovery(lostData bool) time.Duration {
	d := l.opTimeout + clusterBreaker + clusterProbe
	if lostData {
		d += l.grace()
	}
	return d
}

// dated is one request's outcome, dated by the client.
type dated struct {
	sent, answered time.Time
	status         int
	retryAfter     string
	err            error
}

func askOn(in *instance, path, id string) dated {
	d := dated{sent: time.Now()}
	req, _ := http.NewRequest("GET", in.url(path), nil)
	req.Header.Set("Cookie", "PHPSESSID="+id)
	resp, err := clusterClient.Do(req)
	d.answered = time.Now()
	if err != nil {
		d.err = err
		return d
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d.status, d.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	return d
}

// busySession keeps one session's local queue on one instance non-empty:
// workers loop on requests of backendMs each, so that one runs while the
// others wait and the instance keeps the session's lease.
type busySession struct {
	id      string
	mu      sync.Mutex
	replies []dated
	stop    chan struct{}
	wg      sync.WaitGroup
}

func keepBusy(in *instance, workers, backendMs int) *busySession {
	s := &busySession{id: newSessionID(), stop: make(chan struct{})}
	for range workers {
		s.wg.Go(func() {
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				d := askOn(in, fmt.Sprintf("/?ms=%d", backendMs), s.id)
				s.mu.Lock()
				s.replies = append(s.replies, d)
				s.mu.Unlock()
				if d.status != http.StatusOK {
					time.Sleep(20 * time.Millisecond) // refused at once: do not spin
				}
			}
		})
	}
	return s
}

func (s *busySession) end() []dated {
	close(s.stop)
	s.wg.Wait()
	return s.replies
}

// arrivals starts a new session every 20 ms, each sending 2 × 3 requests
// to random instances, until ended.
type arrivals struct {
	mu                 sync.Mutex
	statuses           map[int]int
	errors             int
	refusedUnexplained int // 503s without Retry-After
	ids                []string
	replies            []dated
	stop               chan struct{}
	wg                 sync.WaitGroup
}

func startArrivals(t *testing.T, ins []*instance) *arrivals {
	a := &arrivals{statuses: make(map[int]int), stop: make(chan struct{})}
	a.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-tick.C:
			}
			id := newSessionID()
			a.mu.Lock()
			a.ids = append(a.ids, id)
			a.mu.Unlock()
			for range 2 {
				a.wg.Go(func() {
					for range 3 {
						d := askOn(ins[mrand.IntN(len(ins))], "/", id)
						a.mu.Lock()
						a.replies = append(a.replies, d)
						if d.err != nil {
							if a.errors == 0 {
								t.Logf("first error: %v", d.err)
							}
							a.errors++
						} else {
							a.statuses[d.status]++
							if d.status == http.StatusServiceUnavailable && d.retryAfter == "" {
								a.refusedUnexplained++
							}
						}
						a.mu.Unlock()
					}
				})
			}
		}
	})
	return a
}

func (a *arrivals) end() *arrivals {
	close(a.stop)
	a.wg.Wait()
	return a
}

const degradedSeries = `caddy_session_queue_cluster_degraded{zone="default"}`

// testRedisFault takes Redis away for outage (SIGSTOP, or SIGKILL then a
// restart with an empty dataset) while instance 0 holds a busy session's
// lease and new sessions keep arriving on both instances, then brings it
// back.
func testRedisFault(t *testing.T, onError string, kill bool, outage time.Duration, lt leaseTimings) {
	dir := backendDir(t)
	sock, proc := startRedisProc(t, dir)
	b := startOverlapBackend(t, 3)
	ins, _ := startCluster(t, 2, clusterDirective(sock, fmt.Sprintf("on_error %s\nlease_ttl %s\nop_timeout %s", onError, lt.leaseTTL, lt.opTimeout)), b)
	reject := onError == "reject"

	// Three workers with 100 ms requests: two always wait, so instance 0
	// keeps the lease with no Redis call but its renewals.
	busy := keepBusy(ins[0], 3, 100)
	waitUntil(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		s := b.sessions[busy.id]
		return s != nil && s.served >= 3
	})
	load := startArrivals(t, ins)
	time.Sleep(300 * time.Millisecond)

	faultAt := time.Now()
	if kill {
		proc.kill(t)
	} else if err := syscall.Kill(proc.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Sessions instance 1 does not hold, asked during the outage: a new
	// one, and the busy one (not in local mode, where it would run beside
	// instance 0's, as documented).
	refused := newSessionID()
	var duringOutage []string
	for _, in := range ins {
		waitUntil(t, func() bool { return metric(t, in, degradedSeries) == 1 })
	}
	d := askOn(ins[1], "/", refused)
	duringOutage = append(duringOutage, fmt.Sprintf("new session on instance 1: %d (Retry-After %q)", d.status, d.retryAfter))
	want := http.StatusOK
	if reject {
		want = http.StatusServiceUnavailable
		if d.status != want || d.retryAfter == "" {
			t.Errorf("a new session during the outage: %d %v (Retry-After %q), want 503 with Retry-After", d.status, d.err, d.retryAfter)
		}
		d = askOn(ins[1], "/", busy.id)
		duringOutage = append(duringOutage, fmt.Sprintf("busy session on instance 1: %d (Retry-After %q)", d.status, d.retryAfter))
		if d.status != want || d.retryAfter == "" {
			t.Errorf("the busy session on the instance not holding it, during the outage: %d %v (Retry-After %q), want 503 with Retry-After", d.status, d.err, d.retryAfter)
		}
	} else if d.status != want {
		t.Errorf("a new session during the outage with on_error local: %d %v, want 200", d.status, d.err)
	}
	time.Sleep(outage - time.Since(faultAt))

	if kill {
		_, proc = startRedisProc(t, dir)
	} else if err := syscall.Kill(proc.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	backAt := time.Now()
	// Recovery: the session refused during the outage, asked again until
	// served (in local mode it was served all along: this is the wait for
	// a lease once Redis answers), while the degraded gauges are watched.
	servedAgain := make(chan dated, 1)
	go func() {
		for {
			d := askOn(ins[1], "/", refused)
			if d.status == http.StatusOK || time.Since(backAt) > 15*time.Second {
				servedAgain <- d
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for _, in := range ins {
		waitUntil(t, func() bool { return metric(t, in, degradedSeries) == 0 })
	}
	gaugeDown := time.Since(backAt)
	d = <-servedAgain
	if d.status != http.StatusOK {
		t.Fatalf("session refused during the outage still not served 15s after Redis returned: %d %v", d.status, d.err)
	}
	recovered := d.answered.Sub(backAt)
	// Some load after recovery, then the end.
	time.Sleep(time.Second)
	res := load.end()
	busyReplies := busy.end()
	overlaps, fenceBack, _, _ := b.counts()
	local := metric(t, ins[0], `caddy_session_queue_cluster_local_admissions_total{zone="default"}`) +
		metric(t, ins[1], `caddy_session_queue_cluster_local_admissions_total{zone="default"}`)

	// The busy session on its holder: served while its lease is surely
	// valid (the last renewal that succeeded was sent at most one renewal
	// period before the fault; 250 ms for its requests' wait in the local
	// queue); refused once it can have lapsed and until Redis returns;
	// served again after.
	heldUntil := faultAt.Add(lt.leaseTTL - lt.margin() - lt.renewEvery() - 250*time.Millisecond)
	lapsedFrom := faultAt.Add(lt.leaseTTL - lt.margin() + 50*time.Millisecond)
	var heldServed, heldRefused, lapsedRefused, lapsedServed int
	var busyBack time.Duration // its first 200 after Redis returned, if it was refused
	after := map[int]int{}
	for _, r := range busyReplies {
		switch {
		case r.sent.Before(faultAt):
		case r.sent.Before(heldUntil) && r.sent.Before(backAt):
			if r.status == http.StatusOK {
				heldServed++
			} else {
				heldRefused++
			}
		case r.sent.After(lapsedFrom) && r.answered.Before(backAt):
			if r.status == http.StatusServiceUnavailable && r.retryAfter != "" {
				lapsedRefused++
			} else {
				lapsedServed++
			}
		case r.sent.After(backAt):
			after[r.status]++
			if r.status == http.StatusOK && lapsedRefused > 0 && (busyBack == 0 || r.answered.Sub(backAt) < busyBack) {
				busyBack = r.answered.Sub(backAt)
			}
		}
	}
	fault := "SIGSTOP"
	if kill {
		fault = "SIGKILL + restart (empty)"
	}
	t.Logf("on_error %s, Redis %s for %v (lease_ttl %v, op_timeout %v): busy session on its holder: %d served and %d refused while its lease was valid, "+
		"%d refused and %d served after it could have lapsed, statuses %v after Redis returned; during the outage: %s",
		onError, fault, outage, lt.leaseTTL, lt.opTimeout, heldServed, heldRefused, lapsedRefused, lapsedServed, after, strings.Join(duringOutage, ", "))
	var slowestAfter time.Duration // of arrivals sent once Redis returned
	for _, r := range res.replies {
		if r.sent.After(backAt) {
			slowestAfter = max(slowestAfter, r.answered.Sub(r.sent))
		}
	}
	t.Logf("arrivals: %d sessions, statuses %v, %d errors, %d 503s without Retry-After, the slowest sent after Redis returned took %v; %d overlaps, %d fences back; %v local admissions",
		len(res.ids), res.statuses, res.errors, res.refusedUnexplained, slowestAfter.Round(time.Millisecond), overlaps, fenceBack, local)
	t.Logf("recovery after Redis returned: the session refused during the outage served after %v, the busy one after %v (bound %v); degraded gauge 0 on both after %v (bound %v)",
		recovered.Round(time.Millisecond), busyBack.Round(time.Millisecond), lt.recovery(kill), gaugeDown.Round(time.Millisecond), lt.recovery(false))

	if heldServed == 0 || heldRefused != 0 {
		t.Errorf("the holder refused its busy session while its lease was valid (%d served, %d refused)", heldServed, heldRefused)
	}
	if res.errors != 0 || res.refusedUnexplained != 0 {
		t.Errorf("%d errors, %d 503s without Retry-After", res.errors, res.refusedUnexplained)
	}
	if gaugeDown > lt.recovery(false) {
		t.Errorf("the degraded gauge went down %v after Redis returned, beyond the bound %v", gaugeDown, lt.recovery(false))
	}
	if reject {
		if overlaps != 0 || fenceBack != 0 {
			t.Errorf("on_error reject: %d overlaps, %d fences back", overlaps, fenceBack)
		}
		if res.statuses[http.StatusServiceUnavailable] == 0 {
			t.Error("no arriving session was refused during the outage: it proved nothing")
		}
		if lapsedServed != 0 {
			t.Errorf("the holder served %d requests of its session after its lease could have lapsed, with Redis away", lapsedServed)
		}
		if recovered > lt.recovery(kill) || busyBack > lt.recovery(kill) {
			t.Errorf("refused sessions served again %v and %v after Redis returned, beyond the bound %v", recovered, busyBack, lt.recovery(kill))
		}
		if after[http.StatusOK] == 0 || (kill && len(after) != 1) {
			t.Errorf("after Redis returned, the holder answered its busy session %v (after a restart, it should have reclaimed its lease)", after)
		}
	} else {
		if len(res.statuses) != 1 || res.statuses[http.StatusOK] == 0 {
			t.Errorf("on_error local: statuses %v, want all 200", res.statuses)
		}
		if heldRefused+lapsedRefused != 0 || len(after) != 1 || local == 0 {
			t.Errorf("on_error local: the busy session refused, or no local admission counted (%v)", local)
		}
	}
	checkLogsFreeOfIDs(t, ins, append(res.ids, busy.id, refused))
}

// TestClusterRedisStopped: redis-server SIGSTOPped 5 s, past the busy
// session's lease. Default on_error reject: 0 overlaps; the holder serves
// its session while the lease is valid and refuses it once it can have
// lapsed; 503s with Retry-After for the rest; a refused session is served
// again within the recovery bound. on_error local: everything served,
// counted; the degraded gauge goes up, then down.
func TestClusterRedisStopped(t *testing.T) {
	for _, onError := range []string{"reject", "local"} {
		t.Run(onError, func(t *testing.T) {
			testRedisFault(t, onError, false, 5*time.Second, leaseTimings{3 * time.Second, 250 * time.Millisecond})
		})
	}
}

// TestClusterRedisRestarted: redis-server SIGKILLed and restarted with an
// empty dataset half a second later, while instance 0's lease on a busy
// session is valid: it keeps serving it throughout and reclaims the lease
// from the new Redis. Refused sessions are served again within the
// recovery bound, which includes the boot grace.
func TestClusterRedisRestarted(t *testing.T) {
	for _, onError := range []string{"reject", "local"} {
		t.Run(onError, func(t *testing.T) {
			testRedisFault(t, onError, true, 500*time.Millisecond, leaseTimings{4 * time.Second, 250 * time.Millisecond})
		})
	}
}

// TestClusterRedisRestartHolderReclaims: instance 0 runs a slow request of
// a session when Redis restarts empty. Instance 1, which knew the old
// Redis, asks for a new session (told to wait out the grace, by a reply
// that names the new Redis) and then for that session: it must not get it
// before instance 0 reclaims its lease and finishes.
func TestClusterRedisRestartHolderReclaims(t *testing.T) {
	lt := leaseTimings{6 * time.Second, 250 * time.Millisecond}
	dir := backendDir(t)
	sock, proc := startRedisProc(t, dir)
	b := startOverlapBackend(t, 3)
	ins, _ := startCluster(t, 2, clusterDirective(sock, fmt.Sprintf("lease_ttl %s\nop_timeout %s", lt.leaseTTL, lt.opTimeout)), b)
	if d := askOn(ins[1], "/", newSessionID()); d.status != http.StatusOK { // instance 1 knows this Redis
		t.Fatalf("warm-up: %d %v", d.status, d.err)
	}
	id := newSessionID()
	slow := make(chan dated, 1)
	go func() { slow <- askOn(ins[0], "/?ms=5000", id) }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); s := b.sessions[id]; return s != nil && s.writer })
	// A second request waits in instance 0's local queue: it must not run
	// beside instance 1's either.
	queued := make(chan dated, 1)
	go func() { queued <- askOn(ins[0], "/?ms=100", id) }()
	// Restart right after one of instance 0's renewals, so that the next
	// periodic one comes 2 s later, past the grace: instance 0 must
	// reclaim on hearing of Redis again (its pub/sub connection back),
	// and the grace keep instance 1 out until then.
	renewals := `caddy_session_queue_redis_seconds_count{op="renew",zone="default"}`
	n := metric(t, ins[0], renewals)
	waitUntil(t, func() bool { return metric(t, ins[0], renewals) > n })
	proc.kill(t)
	_, proc = startRedisProc(t, dir)
	restarted := time.Now()
	acquires := `caddy_session_queue_redis_seconds_count{op="acquire",zone="default"}`
	a := metric(t, ins[1], acquires)
	fresh := make(chan dated, 1)
	go func() { fresh <- askOn(ins[1], "/", newSessionID()) }()
	waitUntil(t, func() bool { return metric(t, ins[1], acquires) > a }) // told to wait: the grace
	boot, _ := exec.Command("redis-cli", "-s", sock, "GET", "sq:default:boot").Output()
	other := make(chan dated, 1)
	go func() { other <- askOn(ins[1], "/", id) }()
	s, q, o, f := <-slow, <-queued, <-other, <-fresh
	overlaps, fenceBack, _, _ := b.counts()
	lost := metric(t, ins[0], `caddy_session_queue_lease_expiries_total{zone="default"}`)
	t.Logf("Redis restarted (boot %s) %v into a 5 s request: instance 0's requests %d %d; instance 1's: the session %d answered %v after the restart, a new session %d after %v; %d overlaps, %d fences back, instance 0 lost %v leases",
		strings.TrimSpace(string(boot)), restarted.Sub(s.sent).Round(time.Millisecond), s.status, q.status, o.status, o.answered.Sub(restarted).Round(time.Millisecond),
		f.status, f.answered.Sub(restarted).Round(time.Millisecond), overlaps, fenceBack, lost)
	if s.status != 200 || q.status != 200 || o.status != 200 || f.status != 200 {
		t.Fatal("not all served")
	}
	if overlaps != 0 || fenceBack != 0 {
		t.Fatalf("instance 1 got the session's lease while instance 0 still ran its request: %d overlaps, %d fences back", overlaps, fenceBack)
	}
	if lost != 0 {
		t.Errorf("instance 0 lost %v leases: it should have reclaimed its lease", lost)
	}
}
