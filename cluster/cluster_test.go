package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionqueue/caddy-session-queue/queue"
)

var stressFor = flag.Duration("cluster.stress", 4*time.Second, "how long TestStress runs")

// redisServer is a private redis-server on a unix socket.
type redisServer struct {
	t    testing.TB
	dir  string
	sock string
	cmd  *exec.Cmd
}

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed (integration_test/install-deps.sh installs it)")
	}
	dir, err := os.MkdirTemp("", "sq-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &redisServer{t: t, dir: dir, sock: filepath.Join(dir, "redis.sock")}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", "0", "--unixsocket", r.sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", "")
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := r.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *redisServer) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisServer) client() *redis.Client {
	o := &redis.Options{Network: "unix", Addr: r.sock}
	Bound(o, 250*time.Millisecond)
	return redis.NewClient(o)
}

// counter counts a coordinator's Redis calls and events.
type counter struct {
	calls, acquires, errors, tookOver, lost, handedOff, mismatches atomic.Int64
}

func (o *counter) Call(op string, _ time.Duration, err error) {
	o.calls.Add(1)
	if op == "acquire" {
		o.acquires.Add(1)
	}
	if err != nil {
		o.errors.Add(1)
	}
}
func (o *counter) Degraded(bool)   {}
func (o *counter) TookOver()       { o.tookOver.Add(1) }
func (o *counter) Lost()           { o.lost.Add(1) }
func (o *counter) HandedOff()      { o.handedOff.Add(1) }
func (o *counter) SecretMismatch() { o.mismatches.Add(1) }

type node struct {
	*Coordinator
	obs   *counter
	table *queue.Table
}

func newNode(t testing.TB, r *redisServer, ttl time.Duration) *node {
	t.Helper()
	return newNodeWith(t, r, ttl, 250*time.Millisecond, func(*redis.Options) {})
}

// newNodeWith is newNode with an op_timeout and a change to the client's
// options.
func newNodeWith(t testing.TB, r *redisServer, ttl, opTimeout time.Duration, change func(*redis.Options)) *node {
	t.Helper()
	n := &node{obs: new(counter), table: queue.New(queue.Limits{MaxReaders: 4, MaxWaiting: 1 << 20})}
	o := &redis.Options{Network: "unix", Addr: r.sock}
	Bound(o, opTimeout)
	change(o)
	n.Coordinator = New(redis.NewClient(o), Config{
		Prefix: "sq:test:", Secret: []byte("s3cret"), LeaseTTL: ttl, OpTimeout: opTimeout,
		Busy: n.table.Busy, Observer: n.obs,
	})
	t.Cleanup(func() { n.Close() })
	return n
}

// crash stops a node without giving anything back, as a killed process.
func (n *node) crash() {
	n.mu.Lock()
	n.closed = true
	close(n.stop)
	n.mu.Unlock()
	n.pubsub.Close()
	n.client.Close()
}

func holdWithin(t testing.TB, n *node, key string, d time.Duration) *Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	l, err := n.Hold(ctx, key)
	if err != nil {
		t.Fatalf("Hold(%s): %v", key, err)
	}
	return l
}

// holdAsync starts a Hold and returns a channel with its lease.
func holdAsync(n *node, key string) <-chan *Lease {
	ch := make(chan *Lease, 1)
	go func() {
		l, err := n.Hold(context.Background(), key)
		if err != nil {
			panic(fmt.Sprintf("Hold(%s): %v", key, err))
		}
		ch <- l
	}()
	return ch
}

func TestHandoffBetweenNodes(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, 30*time.Second), newNode(t, r, 30*time.Second)
	la := holdWithin(t, a, "sess", 5*time.Second)
	got := holdAsync(b, "sess")
	// b counts itself acquiring before its call reaches Redis; a release
	// hands the lease over only to a ticket already queued there.
	waitFor(t, func() bool { return b.Stats().Acquiring == 1 && queuedTickets(t, r) == 1 })
	select {
	case <-got:
		t.Fatal("two nodes hold one lease")
	default:
	}
	a.Drop(la)
	lb := <-got
	if lb.Fence() <= la.Fence() {
		t.Fatalf("fence %d after %d", lb.Fence(), la.Fence())
	}
	waitFor(t, func() bool { return a.obs.handedOff.Load() == 1 })
	b.Drop(lb)
}

func TestLeaseServesLocalQueueWithoutRedis(t *testing.T) {
	r := startRedis(t)
	a := newNode(t, r, 30*time.Second)
	turn, _, _ := a.table.Acquire(context.Background(), "sess", queue.Write, 0)
	first := holdWithin(t, a, "sess", 5*time.Second)
	calls := a.obs.calls.Load()
	// Ten more local requests, each queued behind the previous one.
	for range 10 {
		next := make(chan queue.Turn)
		go func() {
			t2, _, _ := a.table.Acquire(context.Background(), "sess", queue.Write, 0)
			next <- t2
		}()
		waitFor(t, func() bool { _, w := a.table.Stats(); return w == 1 })
		turn.Release()
		a.Drop(first)
		turn = <-next
		first = holdWithin(t, a, "sess", 5*time.Second)
	}
	if n := a.obs.calls.Load() - calls; n != 0 {
		t.Fatalf("%d Redis calls for same-node handoffs, want 0", n)
	}
	turn.Release()
	a.Drop(first)
	waitFor(t, func() bool { return a.Stats().Held == 0 })
}

func TestContendedLeaseGoesToTheOtherNode(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, 30*time.Second), newNode(t, r, 30*time.Second)
	// a's local queue stays busy throughout: it alone would keep the lease.
	busy, _, _ := a.table.Acquire(context.Background(), "sess", queue.Read, 0)
	defer busy.Release()
	la := holdWithin(t, a, "sess", 5*time.Second)
	got := holdAsync(b, "sess")
	waitFor(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.entries["sess"].contended
	})
	again := holdAsync(a, "sess") // a contended lease admits no more
	a.Drop(la)
	lb := <-got
	select {
	case <-again:
		t.Fatal("a admitted under a lease b holds")
	default:
	}
	b.Drop(lb)
	la2 := <-again
	if la2.Fence() <= lb.Fence() {
		t.Fatalf("fence %d after %d", la2.Fence(), lb.Fence())
	}
	a.Drop(la2)
}

func TestCrashedHolderExpires(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, 1500*time.Millisecond), newNode(t, r, 1500*time.Millisecond)
	la := holdWithin(t, a, "sess", 5*time.Second)
	a.crash()
	start := time.Now()
	lb := holdWithin(t, b, "sess", 10*time.Second)
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("b got the lease %v after a's crash, before it could have expired", waited)
	}
	if lb.Fence() <= la.Fence() {
		t.Fatalf("fence %d after %d", lb.Fence(), la.Fence())
	}
	if b.obs.tookOver.Load() != 1 {
		t.Fatalf("takeovers = %d, want 1", b.obs.tookOver.Load())
	}
	b.Drop(lb)
}

func TestPausedHolderStopsAdmittingBeforeExpiry(t *testing.T) {
	r := startRedis(t)
	a := newNode(t, r, 1500*time.Millisecond)
	busy, _, _ := a.table.Acquire(context.Background(), "sess", queue.Read, 0)
	defer busy.Release()
	la := holdWithin(t, a, "sess", 5*time.Second)
	a.Drop(la) // kept: a's local queue is busy
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer r.cmd.Process.Signal(syscall.SIGCONT)
	// Within its validity, a serves its local queue without Redis.
	a.Drop(holdWithin(t, a, "sess", 100*time.Millisecond))
	// Past it (LeaseTTL less the margin after the last renewal), a can no
	// longer know the lease is its own, and admits nothing.
	a.mu.Lock()
	until := a.entries["sess"].validUntil
	a.mu.Unlock()
	time.Sleep(time.Until(until))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if l, err := a.Hold(ctx, "sess"); err == nil {
		t.Fatalf("a admitted under a lease that may have expired (fence %d)", l.Fence())
	}
}

// pause stops redis-server for d.
func (r *redisServer) pause(t *testing.T, d time.Duration) {
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// After a restart that lost the leases, the holder reclaims its lease
// before another node can have it: at its next renewal with a short
// lease_ttl, and, with a long one (its next renewal 10 s away, past the
// grace), as soon as its pub/sub connection is back.
func TestRedisRestartHolderReclaimsFirst(t *testing.T) {
	for _, ttl := range []time.Duration{1500 * time.Millisecond, 30 * time.Second} {
		t.Run(ttl.String(), func(t *testing.T) { testRestartHolderReclaimsFirst(t, ttl) })
	}
}

func testRestartHolderReclaimsFirst(t *testing.T, ttl time.Duration) {
	r := startRedis(t)
	a, b := newNode(t, r, ttl), newNode(t, r, ttl)
	busy, _, _ := a.table.Acquire(context.Background(), "sess", queue.Read, 0)
	la := holdWithin(t, a, "sess", 5*time.Second)
	b.Drop(holdWithin(t, b, "other", 5*time.Second)) // b knows this Redis
	r.kill()
	r.start() // empty: the lease is gone
	// b asks at once, before a's next renewal: the grace after the new
	// boot keeps the lease for a to reclaim. (b's first call may meet a
	// pooled connection to the killed Redis: it asks again.)
	got := make(chan *Lease, 1)
	go func() {
		for {
			l, err := b.Hold(context.Background(), "sess")
			if errors.Is(err, ErrUnavailable) {
				time.Sleep(breakerWindow)
				continue
			}
			if err != nil {
				panic(err)
			}
			got <- l
			return
		}
	}()
	waitFor(t, func() bool { return reclaimed(a, "sess", la) })
	select {
	case <-got:
		t.Fatal("b got a lease a still holds")
	default:
	}
	busy.Release()
	a.Drop(la)
	lb := <-got
	if lb.Fence() <= la.Fence() {
		t.Fatalf("fence %d after %d", lb.Fence(), la.Fence())
	}
	b.Drop(lb)
}

// gatedDialer lets a test cut one node's connections to Redis.
type gatedDialer struct{ closed atomic.Bool }

func (g *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.closed.Load() {
		return nil, errors.New("gate closed")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// After Redis lost its data, a node that reclaims its own lease must not
// take that as leave to acquire another node's lease before that node
// reclaims it: it keeps the boot it knew until the grace has passed.
func TestReclaimGivesNoLeaveToTakeOthersLeases(t *testing.T) {
	r := startRedis(t)
	// op_timeout 1s: a grace of 2.5 s, in which b reclaims x and asks for
	// y however loaded the machine.
	const ttl, opTimeout = 6 * time.Second, time.Second
	var gate gatedDialer
	gated := func(o *redis.Options) { o.Dialer = gate.dial }
	a := newNodeWith(t, r, ttl, opTimeout, gated)
	b := newNodeWith(t, r, ttl, opTimeout, func(*redis.Options) {})
	busyA, _, _ := a.table.Acquire(context.Background(), "y", queue.Read, 0)
	defer busyA.Release()
	busyB, _, _ := b.table.Acquire(context.Background(), "x", queue.Read, 0)
	defer busyB.Release()
	ly := holdWithin(t, a, "y", 5*time.Second)
	lx := holdWithin(t, b, "x", 5*time.Second)
	gate.closed.Store(true) // a cannot reach the new Redis for now
	r.kill()
	r.start()
	// b reclaims x (its first call may meet a pooled connection to the
	// killed Redis; its resubscription renews too).
	waitFor(t, func() bool {
		b.renew()
		return reclaimed(b, "x", lx)
	})
	acquires := b.obs.acquires.Load()
	got := holdAsync(b, "y")
	// b is told to wait out the grace; asked again at once (as a
	// resubscription asks for every pending ticket), it must not have
	// learnt the new boot from that reply and be granted.
	for ask := int64(1); ask <= 2; ask++ {
		waitFor(t, func() bool { return b.obs.acquires.Load() >= acquires+ask })
		b.mu.Lock()
		e := b.entries["y"]
		state := e.state
		if e.attempt != nil {
			poke(e.attempt.wake)
		}
		b.mu.Unlock()
		if state == stHeld {
			t.Fatalf("b took y's lease (ask %d) while a had not had its chance to reclaim it", ask)
		}
	}
	gate.closed.Store(false) // a's probe renews and reclaims within the grace
	waitFor(t, func() bool { return reclaimed(a, "y", ly) })
	select {
	case <-got:
		t.Fatal("b got a lease a holds")
	default:
	}
	busyA.Release()
	a.Drop(ly)
	b.Drop(<-got)
	b.Drop(lx)
}

func TestRedisDownFailsFast(t *testing.T) {
	r := startRedis(t)
	a := newNode(t, r, 3*time.Second)
	r.kill()
	start := time.Now()
	if _, err := a.Hold(context.Background(), "sess"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Hold with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := a.Hold(context.Background(), "sess"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second Hold: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("two Holds took %v with op_timeout 250ms", took)
	}
	r.start()
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := a.Hold(ctx, "sess")
		if err != nil {
			return false
		}
		a.Drop(l)
		return true
	})
}

func TestLinkSharesTheRootLease(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, 30*time.Second), newNode(t, r, 30*time.Second)
	la := holdWithin(t, a, "old-id", 5*time.Second)
	if err := a.Link("new-id", "old-id"); err != nil {
		t.Fatal(err)
	}
	got := holdAsync(b, "new-id")
	waitFor(t, func() bool { return b.Stats().Acquiring == 1 })
	select {
	case <-got:
		t.Fatal("the new ID ran beside the old one")
	default:
	}
	a.Drop(la)
	b.Drop(<-got)
}

func TestNoSessionKeyInRedis(t *testing.T) {
	r := startRedis(t)
	a := newNode(t, r, 30*time.Second)
	l := holdWithin(t, a, "visible-session-key", 5*time.Second)
	defer a.Drop(l)
	if err := a.Link("visible-new-key", "visible-session-key"); err != nil {
		t.Fatal(err)
	}
	c := r.client()
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, _ := c.Dump(context.Background(), k).Result()
		if strings.Contains(k+v, "visible") {
			t.Fatalf("session key in Redis: %q", k)
		}
	}
	if len(keys) < 2 {
		t.Fatalf("keys = %q", keys)
	}
}

// TestStress runs 3 nodes, each with its own local queue, × 8 goroutines
// over 50 keys, with readers, writers and canceled waits, and kills the
// pub/sub connections midway: at no time do two nodes hold a key, fences
// never go back and grow at every change of node, and every Hold returns.
func TestStress(t *testing.T) {
	r := startRedis(t)
	const nodes, workers, keys = 3, 8, 50
	type keyState struct {
		mu        sync.Mutex
		node      int
		count     int
		lastFence uint64
	}
	var state [keys]keyState
	for i := range state {
		state[i].node = -1
	}
	var violations, grants, canceled atomic.Int64
	var ns []*node
	for range nodes {
		ns = append(ns, newNode(t, r, 3*time.Second))
	}
	stop := time.Now().Add(*stressFor)
	var wg sync.WaitGroup
	for ni, n := range ns {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ni), uint64(w)))
				for time.Now().Before(stop) {
					k := rng.IntN(keys)
					key := fmt.Sprintf("k%d", k)
					mode := queue.Write
					if rng.IntN(4) == 0 {
						mode = queue.Read
					}
					wait := time.Duration(rng.IntN(200)+1) * time.Millisecond
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					turn, _, err := n.table.Acquire(ctx, key, mode, 0)
					if err != nil {
						cancel()
						canceled.Add(1)
						continue
					}
					l, err := n.Hold(ctx, key)
					cancel()
					if err != nil {
						turn.Release()
						canceled.Add(1)
						continue
					}
					grants.Add(1)
					s := &state[k]
					s.mu.Lock()
					switch {
					case s.count > 0 && s.node != ni:
						violations.Add(1)
						t.Errorf("key %d: node %d admitted while node %d holds", k, ni, s.node)
					case s.count == 0 && s.node != ni && l.Fence() <= s.lastFence:
						violations.Add(1)
						t.Errorf("key %d: fence %d after %d on a change of node", k, l.Fence(), s.lastFence)
					case l.Fence() < s.lastFence:
						violations.Add(1)
						t.Errorf("key %d: fence went back from %d to %d", k, s.lastFence, l.Fence())
					}
					s.node, s.lastFence = ni, l.Fence()
					s.count++
					s.mu.Unlock()
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					s.mu.Lock()
					s.count--
					s.mu.Unlock()
					turn.Release()
					n.Drop(l)
				}
			}()
		}
	}
	time.Sleep(*stressFor / 2)
	if err := r.client().ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var handoffs int64
	for _, n := range ns {
		handoffs += n.obs.handedOff.Load()
	}
	t.Logf("%d grants, %d canceled waits, %d cross-node handoffs, %d violations", grants.Load(), canceled.Load(), handoffs, violations.Load())
	if grants.Load() == 0 || handoffs == 0 {
		t.Fatal("the stress test did not exercise handoffs")
	}
	// Idle: every lease goes back.
	for _, n := range ns {
		waitFor(t, func() bool { s := n.Stats(); return s.Held == 0 && s.Acquiring == 0 })
	}
}

// queuedTickets counts the tickets waiting in Redis's session queues (the
// list keys under the test prefix).
func queuedTickets(t testing.TB, r *redisServer) int64 {
	t.Helper()
	c := r.client()
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "sq:test:*").Result()
	if err != nil {
		return -1
	}
	var n int64
	for _, k := range keys {
		if typ, _ := c.Type(ctx, k).Result(); typ == "list" {
			l, _ := c.LLen(ctx, k).Result()
			n += l
		}
	}
	return n
}

// reclaimed reports whether n holds key's lease under another fence than
// old's: it has reclaimed the lease after Redis lost it.
func reclaimed(n *node, key string, old *Lease) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.entries[key].fence != old.Fence()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// New runs as Caddy starts the session_queue app: it must not wait for a
// Redis that accepts connections but does not answer (a slow or cut
// link), however long op_timeout is.
func TestNewWaitsForNoRedisCall(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mute.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		var held []net.Conn // never answered
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	opts := &redis.Options{Network: "unix", Addr: sock}
	Bound(opts, time.Hour)
	created := make(chan *Coordinator, 1)
	go func() {
		created <- New(redis.NewClient(opts), Config{Prefix: "t:", Secret: []byte("0123456789abcdef"), LeaseTTL: 4 * time.Hour, OpTimeout: time.Hour})
	}()
	select {
	case c := <-created:
		ln.Close()
		<-accepted
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("New waited for Redis to answer")
	}
}

// A hint that another node waits, arriving between a grant and the wake of
// the Hold that waited for it, must not take the lease from that Hold: it
// would go to the node that asked after (TestContendedLeaseGoesToTheOtherNode
// hung about once in a hundred runs on this).
func TestGrantReachesItsWaiterDespiteContention(t *testing.T) {
	r := startRedis(t)
	a, b := newNode(t, r, 30*time.Second), newNode(t, r, 30*time.Second)
	lb := holdWithin(t, b, "sess", 5*time.Second)
	<-a.subscribed
	// a hears no push: the test delivers the grant and the hint itself,
	// back to back, as the listener does when both arrive together.
	if err := a.pubsub.Unsubscribe(context.Background(), a.chann); err != nil {
		t.Fatal(err)
	}
	got := holdAsync(a, "sess")
	waitFor(t, func() bool { return queuedTickets(t, r) == 1 })
	a.mu.Lock()
	ticket, name := a.entries["sess"].ticket, a.entries["sess"].name
	a.mu.Unlock()
	b.Drop(lb) // Redis grants a's ticket; the push goes unheard
	c := r.client()
	defer c.Close()
	h := a.keys(name)[0]
	waitFor(t, func() bool { return c.HGet(context.Background(), h, "holder").Val() == ticket })
	fence, err := c.HGet(context.Background(), h, "fence").Uint64()
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.granted(ticket, fence, time.Now()); !ok {
		t.Fatal("grant not taken")
	}
	a.push("c "+name, time.Now())
	la := <-got
	if la.Fence() != fence {
		t.Fatalf("Hold got fence %d, not the grant it waited for (%d): the hint gave that lease away", la.Fence(), fence)
	}
	if holder := c.HGet(context.Background(), h, "holder").Val(); holder != ticket {
		t.Fatalf("Redis holder %q, want a's ticket", holder)
	}
	a.Drop(la)
}

// Instances that share a key prefix but not the secret name sessions
// differently: each would take its own leases and never meet the other's.
// The later one is refused instead, until the first one's check expires.
func TestOtherSecretIsRefused(t *testing.T) {
	r := startRedis(t)
	a := newNode(t, r, 30*time.Second)
	b := &node{obs: new(counter), table: queue.New(queue.Limits{MaxReaders: 4, MaxWaiting: 16})}
	b.Coordinator = New(r.client(), Config{
		Prefix: "sq:test:", Secret: []byte("another-secret"), LeaseTTL: 30 * time.Second, OpTimeout: 250 * time.Millisecond,
		Busy: b.table.Busy, Observer: b.obs,
	})
	t.Cleanup(func() { b.Close() })
	la := holdWithin(t, a, "sess", 5*time.Second)
	defer a.Drop(la)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if lb, err := b.Hold(ctx, "sess"); !errors.Is(err, ErrSecretMismatch) {
		if err == nil {
			t.Fatalf("b holds sess (fence %d) beside a: the secrets differ, and so do their names for it", lb.Fence())
		}
		t.Fatalf("Hold with another secret: %v, want ErrSecretMismatch", err)
	}
	if n := b.obs.mismatches.Load(); n != 1 {
		t.Fatalf("mismatches reported = %d, want 1", n)
	}
	if s := b.Stats(); s.Held != 0 || s.Acquiring != 0 {
		t.Fatalf("b keeps state after the refusal: %+v", s)
	}
}
