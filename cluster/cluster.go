// Package cluster lets several processes serialize the requests of one
// session through Redis: at most one process (node) at a time holds a
// session's lease, and a node runs requests of a session only while it
// holds its lease.
//
// It sits behind a node's local queue: only the request at the head of a
// node's local queue for a session calls Hold, and the lease, once held,
// serves the node's later requests of that session without a Redis call
// for as long as the node has some of them running or waiting and no other
// node waits. Across nodes, leases are granted in order of arrival at
// Redis; a waiting node is told of its grant by a pub/sub push. Every grant
// carries a fencing token that grows with each grant of the session.
//
// A lease lasts LeaseTTL in Redis and is renewed every LeaseTTL/3. A node
// counts a lease valid only until LeaseTTL minus a margin after it sent
// the last renewal that succeeded, so that it stops admitting requests
// under a lease before Redis can have given the lease to another node.
//
// Session keys never reach Redis: names are HMAC-SHA256(secret, key).
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned by Hold when Redis could not be asked in
// time (down, slow, or failed recently).
var ErrUnavailable = errors.New("cluster: redis unavailable")

// ErrSecretMismatch is returned by Hold when other nodes use the same
// key prefix in Redis with another secret: they name sessions differently,
// so a lease taken here would not keep their requests out.
var ErrSecretMismatch = errors.New("cluster: other instances use this key prefix with a different secret")

// ErrClosed is returned by Hold once the coordinator is closed.
var ErrClosed = errors.New("cluster: coordinator closed")

// Config configures a Coordinator.
type Config struct {
	// Prefix starts every Redis key and channel name.
	Prefix string
	// Secret keys the names of sessions in Redis; every node must share it.
	Secret []byte
	// LeaseTTL is how long a lease lasts in Redis without renewal.
	LeaseTTL time.Duration
	// OpTimeout bounds each Redis call.
	OpTimeout time.Duration
	// Busy reports whether the node has requests of the session with this
	// key running or waiting: a lease is kept while it does.
	Busy func(key string) bool
	// Observer is told of calls and events, for metrics; may be nil.
	Observer Observer
}

// Observer receives a coordinator's events. Its methods must be quick and
// safe for concurrent use.
type Observer interface {
	// Call reports one Redis round trip: op is acquire, release, renew,
	// link or ping.
	Call(op string, took time.Duration, err error)
	// Degraded reports that Redis became unavailable (true) or answered
	// again (false).
	Degraded(bool)
	// TookOver reports a grant that followed the expiry of another
	// holder's lease.
	TookOver()
	// Lost reports a lease this node held and Redis no longer counted as
	// its own on renewal.
	Lost()
	// HandedOff reports a release that granted the lease to another node.
	HandedOff()
	// SecretMismatch reports a Hold refused with ErrSecretMismatch.
	SecretMismatch()
}

// Timings derived from LeaseTTL.
const (
	// waiterTTL is how long a queued ticket stays eligible without being
	// refreshed; tickets refresh every waiterTTL/3, which also recovers
	// grants whose push was lost.
	waiterTTL = 6 * time.Second
	// linkTTL is how long a regeneration link lasts after its last use.
	linkTTL = 24 * time.Hour
	// breakerWindow is how long Hold fails at once after a failed call,
	// so that an outage costs one op_timeout per window, not per request.
	breakerWindow = 250 * time.Millisecond
	// probeEvery is how often a node that cannot reach Redis tries again
	// (a renewal if it holds leases, else a ping).
	probeEvery = 2 * breakerWindow
)

// Coordinator holds leases for one node. It owns its Redis client.
type Coordinator struct {
	cfg    Config
	client redis.UniversalClient
	node   string
	chann  string
	margin time.Duration
	pubsub *redis.PubSub
	// check is what every node of the prefix shows Redis of its secret
	// (an HMAC of a constant under it), so that a node with another
	// secret finds out instead of silently taking leases nobody else
	// sees.
	check string

	mu      sync.Mutex
	entries map[string]*entry // by local key
	tickets map[string]*entry // by ticket of a pending acquisition
	seq     uint64
	closed  bool
	// retiring: close once no lease is in use (a reload replaced it).
	retiring bool
	// downUntil: Hold fails at once until then (see breakerWindow).
	downUntil time.Time
	degraded  bool
	// boot identifies the Redis dataset last seen; see scripts.go.
	boot string
	// calSent and calRedis date pushed grants: a reply carrying Redis's
	// time calRedis (ms) answered a call sent at calSent, so Redis time g
	// happened here no earlier than calSent + (g - calRedis).
	calSent  time.Time
	calRedis int64
	// subscribed is closed once the node's channel is subscribed.
	subscribed chan struct{}
	// renewNow asks renewLoop for a renewal at once: the pub/sub
	// connection came back, so Redis may have restarted and lost the
	// leases, which a holder must reclaim within the grace.
	renewNow chan struct{}
	stop     chan struct{}
	done     sync.WaitGroup
}

type entryState uint8

const (
	stIdle entryState = iota
	stAcquiring
	stHeld
	stReleasing
)

// entry is the node's state of one local key's lease.
type entry struct {
	key    string
	name   string // Redis name, after any regeneration link
	ticket string
	state  entryState
	// refs counts Holds not yet dropped.
	refs int
	// waiters counts Holds waiting for the acquisition in progress.
	waiters    int
	fence      uint64
	validUntil time.Time
	// contended: another node waits; the lease admits no more requests
	// and goes back once refs drop to 0.
	contended bool
	attempt   *attempt
	// changed is closed, and replaced, at every change of state.
	changed chan struct{}
}

// attempt is one acquisition of a lease, which the node's Holds of a key
// wait for together.
type attempt struct {
	done chan struct{}
	err  error
	// holds counts the Holds waiting for this attempt. A grant gives each
	// of them its share of the lease at once, so that nothing (a hint that
	// another node waits, a renewal) can give the lease back before they
	// wake and run.
	holds   int
	wake    chan struct{} // a hint arrived: ask Redis again
	abandon chan struct{} // every waiter left
}

// Lease is one Hold's share of a lease. Drop it exactly once.
type Lease struct {
	e     *entry
	fence uint64
}

// Fence is the lease's fencing token: it grows with every grant of the
// session's lease, to whichever node.
func (l *Lease) Fence() uint64 { return l.fence }

// Bound makes a client's calls end within opTimeout: go-redis otherwise
// waits out its own read timeout (3s) whatever the context's deadline,
// which would stretch one call past the lease's margin. Retries on a
// broken connection (after a Redis restart) stay within the deadline.
func Bound(o *redis.Options, opTimeout time.Duration) {
	o.ContextTimeoutEnabled = true
	o.DialTimeout = opTimeout
	o.ReadTimeout = opTimeout
	o.WriteTimeout = opTimeout
	o.MinRetryBackoff = time.Millisecond
	o.MaxRetryBackoff = opTimeout / 4
}

// New returns a coordinator using client, which it closes on Close. The
// client's options should have gone through Bound.
func New(client redis.UniversalClient, cfg Config) *Coordinator {
	var id [8]byte
	_, _ = rand.Read(id[:])
	c := &Coordinator{
		cfg:        cfg,
		client:     client,
		node:       hex.EncodeToString(id[:]),
		margin:     max(cfg.OpTimeout, cfg.LeaseTTL/10),
		entries:    make(map[string]*entry),
		tickets:    make(map[string]*entry),
		subscribed: make(chan struct{}),
		renewNow:   make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	c.chann = cfg.Prefix + "n:" + c.node
	c.check = c.Name("caddy-session-queue secret check")
	// Without a channel, Subscribe does not dial: listen subscribes, so
	// that New (and Caddy's start with it) never waits for Redis.
	c.pubsub = client.Subscribe(context.Background())
	c.done.Add(2)
	go c.listen()
	go c.renewLoop()
	return c
}

// Node is this coordinator's random node ID.
func (c *Coordinator) Node() string { return c.node }

// Name is the Redis name of a local key: the session's hash tag.
func (c *Coordinator) Name(key string) string {
	m := hmac.New(sha256.New, c.cfg.Secret)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// keys are a session's keys as acquire takes them: h, q, w, link, boot,
// check.
func (c *Coordinator) keys(name string) []string {
	h := c.cfg.Prefix + "{" + name + "}"
	return []string{h, h + ":q", h + ":w", h + ":r", c.cfg.Prefix + "boot", c.cfg.Prefix + "check"}
}

// renewKeys are those renew takes: h, q, w, boot.
func (c *Coordinator) renewKeys(name string) []string {
	k := c.keys(name)
	return []string{k[0], k[1], k[2], k[4]}
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// keep is how long a session's keys outlive their last write.
func (c *Coordinator) keep() int64 { return 2 * ms(max(c.cfg.LeaseTTL, waiterTTL)) }

// grace is how long after a new boot (a Redis that lost its data) nodes
// that knew the old one get no new lease, so that holders reclaim theirs
// first. A holder renews as soon as it hears of Redis again: its pub/sub
// connection, broken when Redis went, is subscribed again within 100 ms
// of Redis accepting connections (go-redis retries that often), and a
// renewal that fails then is tried again by the next probe: two calls and
// a probe period.
func (c *Coordinator) grace() int64 { return ms(2*c.cfg.OpTimeout + probeEvery) }

func (c *Coordinator) knownBoot() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot
}

// sawReply records what a reply tells of Redis: its time, and its boot.
// A node takes on a new boot only once the grace after it has passed:
// until then it must keep showing Redis the boot it knew, or its next call
// (for this session, or for another whose holder has not reclaimed it
// yet) would be granted as if this node had never held anything.
func (c *Coordinator) sawReply(boot string, sent time.Time, redisNow int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.boot == "" {
		c.boot = boot
	} else if b, err := strconv.ParseInt(boot, 10, 64); err == nil && redisNow >= b+c.grace() {
		c.boot = boot
	}
	c.calSent, c.calRedis = sent, redisNow
}

// call runs one script with op_timeout, and keeps the breaker and the
// observer informed.
func (c *Coordinator) call(op string, s *redis.Script, keys []string, args ...any) ([]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
	defer cancel()
	start := time.Now()
	res, err := s.Run(ctx, c.client, keys, args...).Slice()
	c.observed(op, start, err)
	return res, err
}

func (c *Coordinator) observed(op string, start time.Time, err error) {
	if o := c.cfg.Observer; o != nil {
		o.Call(op, time.Since(start), err)
	}
	c.mu.Lock()
	changed := c.degraded != (err != nil)
	c.degraded = err != nil
	if err != nil {
		c.downUntil = time.Now().Add(breakerWindow)
	}
	c.mu.Unlock()
	if changed && c.cfg.Observer != nil {
		c.cfg.Observer.Degraded(err != nil)
	}
}

// Hold returns once this node holds the lease of the session with the
// given local key, or ctx ends (its error is returned), or Redis cannot
// be asked (ErrUnavailable). Call it only while holding the key's local
// turn. A lease the node already holds, uncontended, costs no Redis call.
func (c *Coordinator) Hold(ctx context.Context, key string) (*Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.closed {
			return nil, ErrClosed
		}
		e := c.entries[key]
		if e == nil {
			e = &entry{key: key, name: c.Name(key), changed: make(chan struct{})}
			c.entries[key] = e
		}
		switch e.state {
		case stHeld:
			if !e.contended && time.Now().Before(e.validUntil) {
				e.refs++
				return &Lease{e: e, fence: e.fence}, nil
			}
			// Contended, or lost (renewal failed for too long): the
			// lease admits nobody more. Give it back once unused, then
			// queue again.
			if e.refs == 0 {
				c.releaseLocked(e)
			}
			if err := c.waitChange(ctx, e); err != nil {
				return nil, err
			}
		case stReleasing:
			if err := c.waitChange(ctx, e); err != nil {
				return nil, err
			}
		case stIdle:
			if time.Now().Before(c.downUntil) {
				c.forgetIfIdle(e)
				return nil, ErrUnavailable
			}
			c.startAttempt(e)
			fallthrough
		case stAcquiring:
			a := e.attempt
			e.waiters++
			a.holds++
			c.mu.Unlock()
			select {
			case <-a.done:
			case <-ctx.Done():
			}
			c.mu.Lock()
			e.waiters--
			select {
			case <-a.done:
				if a.err != nil {
					c.forgetIfIdle(e)
					return nil, a.err
				}
				// granted gave this Hold its share.
				if time.Now().Before(e.validUntil) {
					return &Lease{e: e, fence: e.fence}, nil
				}
				// Granted too late to be used (a push delayed past the
				// lease's validity): give the share back, queue again.
				c.dropLocked(e)
			default:
				a.holds--
				if e.waiters == 0 && e.attempt == a {
					close(a.abandon)
					e.attempt = nil
					e.state = stReleasing
					c.signal(e)
				}
				c.forgetIfIdle(e)
				return nil, ctx.Err()
			}
		}
	}
}

// waitChange waits, with c.mu released, for e's next change of state.
func (c *Coordinator) waitChange(ctx context.Context, e *entry) error {
	ch := e.changed
	e.waiters++
	c.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	e.waiters--
	if err != nil {
		c.forgetIfIdle(e)
	}
	return err
}

func (c *Coordinator) signal(e *entry) {
	close(e.changed)
	e.changed = make(chan struct{})
}

// forgetIfIdle drops an entry nobody uses.
func (c *Coordinator) forgetIfIdle(e *entry) {
	if e.state == stIdle && e.refs == 0 && e.waiters == 0 && c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
	c.closeIfRetired()
}

func (c *Coordinator) startAttempt(e *entry) {
	c.seq++
	e.ticket = c.node + "." + strconv.FormatUint(c.seq, 36)
	e.state = stAcquiring
	e.contended = false
	a := &attempt{done: make(chan struct{}), wake: make(chan struct{}, 1), abandon: make(chan struct{})}
	e.attempt = a
	c.tickets[e.ticket] = e
	c.done.Add(1)
	go c.acquire(e, a, e.ticket)
}

// acquire asks Redis for e's lease until it is granted, fails, or every
// waiter has left.
func (c *Coordinator) acquire(e *entry, a *attempt, ticket string) {
	defer c.done.Done()
	// A grant pushed before the channel is subscribed would be lost and
	// found only by the next refresh.
	select {
	case <-c.subscribed:
	case <-time.After(c.cfg.OpTimeout):
	case <-a.abandon:
	}
	c.mu.Lock()
	name := e.name
	c.mu.Unlock()
	refresh := time.NewTimer(0)
	defer refresh.Stop()
	for {
		select {
		case <-a.done: // granted by a push, or closed
			c.mu.Lock()
			closing := e.state == stReleasing && e.ticket == ticket
			c.mu.Unlock()
			if closing {
				c.finishRelease(e, name, ticket)
			}
			return
		case <-a.abandon:
			c.finishRelease(e, name, ticket)
			return
		case <-refresh.C:
		case <-a.wake:
		}
		sent := time.Now()
		res, err := c.call("acquire", acquireScript, c.keys(name), ticket, ms(c.cfg.LeaseTTL), c.keep(),
			c.chann, c.grace(), ms(waiterTTL), name, ms(linkTTL), c.knownBoot(), c.check)
		if err != nil {
			c.mu.Lock()
			if e.attempt == a {
				c.failLocked(e, a, fmt.Errorf("%w: acquire: %v", ErrUnavailable, err))
				c.mu.Unlock()
				// The ticket may have been queued: withdraw it, or the
				// lease would go to nobody once granted.
				c.releaseTicket(name, ticket)
				return
			}
			c.mu.Unlock()
			continue
		}
		kind, _ := res[0].(int64)
		if kind == 4 {
			if c.cfg.Observer != nil {
				c.cfg.Observer.SecretMismatch()
			}
			c.mu.Lock()
			mine := e.attempt == a
			if mine {
				c.failLocked(e, a, ErrSecretMismatch)
			}
			c.mu.Unlock()
			if !mine { // abandoned meanwhile
				c.finishRelease(e, name, ticket)
			}
			return
		}
		if kind != 2 {
			redisNow, _ := res[len(res)-1].(int64)
			c.sawReply(fmt.Sprint(res[len(res)-2]), sent, redisNow)
		}
		switch kind {
		case 1:
			fence, _ := strconv.ParseUint(fmt.Sprint(res[1]), 10, 64)
			if took, _ := res[2].(int64); took == 1 && c.cfg.Observer != nil {
				c.cfg.Observer.TookOver()
			}
			if ok, stale := c.granted(ticket, fence, sent); !ok && stale {
				c.finishRelease(e, name, ticket)
			}
			return
		case 2:
			name = fmt.Sprint(res[1])
			c.mu.Lock()
			e.name = name
			c.mu.Unlock()
			refresh.Reset(0)
		case 3:
			wait, _ := res[1].(int64)
			refresh.Reset(time.Duration(wait+1) * time.Millisecond)
		default:
			if took, _ := res[1].(int64); took == 1 && c.cfg.Observer != nil {
				c.cfg.Observer.TookOver()
			}
			refresh.Reset(waiterTTL / 3)
		}
	}
}

// granted makes ticket's entry hold the lease with fence, valid from
// since (when the request that led to the grant was sent, or the push
// received). A grant both pushed and returned is taken once; stale
// reports a grant that nobody waits for any more, to be given back.
func (c *Coordinator) granted(ticket string, fence uint64, since time.Time) (ok, stale bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.tickets[ticket]
	if e == nil || e.state != stAcquiring || e.ticket != ticket {
		for _, e := range c.entries {
			if e.ticket == ticket && e.state == stHeld {
				return false, false
			}
		}
		return false, true
	}
	delete(c.tickets, ticket)
	a := e.attempt
	e.attempt = nil
	e.state = stHeld
	e.refs += a.holds
	e.fence = fence
	e.validUntil = since.Add(c.cfg.LeaseTTL - c.margin)
	close(a.done)
	c.signal(e)
	return true, false
}

func (c *Coordinator) failLocked(e *entry, a *attempt, err error) {
	delete(c.tickets, e.ticket)
	a.err = err
	e.attempt = nil
	e.state = stIdle
	close(a.done)
	c.signal(e)
}

// Drop gives back one Hold's share of a lease. The node keeps the lease
// while it has requests of the session running or waiting and no other
// node waits; otherwise it releases it.
func (c *Coordinator) Drop(l *Lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(l.e)
}

func (c *Coordinator) dropLocked(e *entry) {
	e.refs--
	if e.refs > 0 || e.state != stHeld {
		c.closeIfRetired()
		return
	}
	if !e.contended && !c.retiring && !c.closed && time.Now().Before(e.validUntil) && c.cfg.Busy(e.key) {
		return
	}
	c.releaseLocked(e)
}

// releaseLocked gives e's held lease back to Redis in the background.
func (c *Coordinator) releaseLocked(e *entry) {
	e.state = stReleasing
	c.signal(e)
	name, ticket := e.name, e.ticket
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		c.finishRelease(e, name, ticket)
	}()
}

// finishRelease releases or withdraws ticket, then makes e idle.
func (c *Coordinator) finishRelease(e *entry, name, ticket string) {
	c.releaseTicket(name, ticket)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tickets, ticket)
	if e.state == stReleasing && e.ticket == ticket {
		e.state = stIdle
		c.signal(e)
		c.forgetIfIdle(e)
	}
}

func (c *Coordinator) releaseTicket(name, ticket string) {
	keys := c.keys(name)[:3]
	res, err := c.call("release", releaseScript, keys, ticket, ms(c.cfg.LeaseTTL), c.keep(), c.chann, name)
	if err == nil && len(res) > 0 {
		if kind, _ := res[0].(int64); kind == 2 && c.cfg.Observer != nil {
			c.cfg.Observer.HandedOff()
		}
	}
}

// Link makes the session whose local key is newKey share the lease of
// rootKey's, on every node: a node that sees a regenerated ID queues
// behind a node still serving the old one.
func (c *Coordinator) Link(newKey, rootKey string) error {
	if newKey == rootKey {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
	defer cancel()
	start := time.Now()
	err := c.client.Set(ctx, c.keys(c.Name(newKey))[3], c.Name(rootKey), linkTTL).Err()
	c.observed("link", start, err)
	return err
}

// listen handles the pushes to the node's channel: grants ("g name
// ticket fence") and hints that another node waits ("c name").
func (c *Coordinator) listen() {
	defer c.done.Done()
	// On failure the channel is still recorded, and subscribed again as
	// the channel below reconnects.
	_ = c.pubsub.Subscribe(context.Background(), c.chann)
	ch := c.pubsub.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(max(c.cfg.LeaseTTL/3, time.Second)))
	first := true
	for msg := range ch {
		switch m := msg.(type) {
		case *redis.Subscription:
			if first {
				first = false
				close(c.subscribed)
				continue
			}
			// Redis went away, and may have lost the leases: renew now, to
			// reclaim them within the grace.
			poke(c.renewNow)
			// Pushes sent while the connection was down are lost: ask
			// again for every pending ticket.
			c.mu.Lock()
			for _, e := range c.tickets {
				if a := e.attempt; a != nil {
					poke(a.wake)
				}
			}
			c.mu.Unlock()
		case *redis.Message:
			c.push(m.Payload, time.Now())
		}
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Coordinator) push(payload string, received time.Time) {
	fields := strings.Fields(payload)
	switch {
	case len(fields) == 5 && fields[0] == "g":
		fence, err := strconv.ParseUint(fields[3], 10, 64)
		grantedAt, err2 := strconv.ParseInt(fields[4], 10, 64)
		if err != nil || err2 != nil {
			return
		}
		// A push may arrive late (a slow link, a backlog on the pub/sub
		// connection): the lease dates from the grant, not the arrival.
		c.mu.Lock()
		calSent, calRedis := c.calSent, c.calRedis
		if calSent.IsZero() {
			// Undatable: ask Redis, whose answer is dated by its call.
			if e := c.tickets[fields[2]]; e != nil && e.attempt != nil {
				poke(e.attempt.wake)
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		since := calSent.Add(time.Duration(grantedAt-calRedis) * time.Millisecond)
		if received.Before(since) {
			since = received
		}
		if ok, stale := c.granted(fields[2], fence, since); !ok && stale {
			// Nobody waits for it any more (its Holds left meanwhile): hand
			// the lease on.
			name, ticket := fields[1], fields[2]
			c.done.Add(1)
			go func() {
				defer c.done.Done()
				c.releaseTicket(name, ticket)
			}()
		}
	case len(fields) == 2 && fields[0] == "c":
		c.mu.Lock()
		for _, e := range c.entries {
			if e.name != fields[1] {
				continue
			}
			switch e.state {
			case stHeld:
				e.contended = true
				if e.refs == 0 {
					c.releaseLocked(e)
				}
			case stAcquiring:
				// Only a holder's channel hears of waiters: this node was
				// granted the lease by a call whose reply is still on its
				// way. The hint would be lost, and the other node kept
				// waiting until its next refresh.
				e.contended = true
			}
		}
		c.mu.Unlock()
	}
}

// renewLoop renews the held leases every LeaseTTL/3 in one pipeline, and
// gives back those kept for a local queue that has since emptied.
func (c *Coordinator) renewLoop() {
	defer c.done.Done()
	tick := time.NewTicker(c.cfg.LeaseTTL / 3)
	defer tick.Stop()
	// While Redis is unavailable, a probe finds out when it is back, even
	// if no request asks. A holder's probe is a renewal: after Redis lost
	// its data, the first renewal that gets through reclaims the leases,
	// and only the grace after the new boot allows for it.
	probe := time.NewTicker(probeEvery)
	defer probe.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
			c.renew()
		case <-c.renewNow:
			c.renew()
		case <-probe.C:
			c.mu.Lock()
			degraded := c.degraded
			c.mu.Unlock()
			if degraded && !c.renew() {
				ctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
				start := time.Now()
				err := c.client.Ping(ctx).Err()
				cancel()
				c.observed("ping", start, err)
			}
		}
	}
}

// renew reports whether it asked Redis.
func (c *Coordinator) renew() bool {
	type held struct {
		e            *entry
		name, ticket string
	}
	var leases []held
	c.mu.Lock()
	for _, e := range c.entries {
		if e.state != stHeld {
			continue
		}
		if e.refs == 0 && !c.cfg.Busy(e.key) {
			c.releaseLocked(e)
			continue
		}
		leases = append(leases, held{e, e.name, e.ticket})
	}
	c.mu.Unlock()
	if len(leases) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.OpTimeout)
	defer cancel()
	sent := time.Now()
	boot := c.knownBoot()
	run := func() ([]*redis.Cmd, error) {
		pipe := c.client.Pipeline()
		cmds := make([]*redis.Cmd, len(leases))
		for i, l := range leases {
			cmds[i] = renewScript.EvalSha(ctx, pipe, c.renewKeys(l.name),
				l.ticket, ms(c.cfg.LeaseTTL), c.keep(), c.chann, c.grace(), boot)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = renewScript.Load(ctx, c.client).Err(); err == nil {
			cmds, err = run()
		}
	}
	c.observed("renew", sent, err)
	if err != nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, l := range leases {
		e := l.e
		if e.state != stHeld || e.ticket != l.ticket {
			continue
		}
		res, err := cmds[i].Slice()
		if err != nil || len(res) == 0 {
			continue
		}
		switch kind, _ := res[0].(int64); kind {
		case 1:
			e.validUntil = sent.Add(c.cfg.LeaseTTL - c.margin)
			if waiting, _ := res[1].(int64); waiting > 0 {
				e.contended = true
				if e.refs == 0 {
					c.releaseLocked(e)
				}
			}
		case 2:
			// Reclaimed; the new boot is taken on later (see sawReply).
			e.fence, _ = strconv.ParseUint(fmt.Sprint(res[1]), 10, 64)
			e.validUntil = sent.Add(c.cfg.LeaseTTL - c.margin)
		default:
			if c.cfg.Observer != nil {
				c.cfg.Observer.Lost()
			}
			// Not ours any more: admit nobody under it, and give nothing
			// back.
			e.validUntil = time.Time{}
			if e.refs == 0 {
				e.state = stIdle
				c.signal(e)
				c.forgetIfIdle(e)
			} else {
				e.contended = true
			}
		}
	}
	return true
}

// Stats is a snapshot of a coordinator.
type Stats struct {
	Node      string `json:"node"`
	Held      int    `json:"leases_held"`
	Acquiring int    `json:"leases_waiting"`
	Degraded  bool   `json:"degraded"`
}

// Stats returns a snapshot of the coordinator's leases.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Node: c.node, Degraded: c.degraded}
	for _, e := range c.entries {
		switch e.state {
		case stHeld:
			s.Held++
		case stAcquiring:
			s.Acquiring++
		}
	}
	return s
}

// Retire closes the coordinator once no lease of it is in use: a reload
// replaced it, and requests admitted under it may still run.
func (c *Coordinator) Retire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retiring = true
	c.closeIfRetired()
}

func (c *Coordinator) closeIfRetired() {
	if !c.retiring || c.closed {
		return
	}
	for _, e := range c.entries {
		if e.refs > 0 || e.waiters > 0 {
			return
		}
	}
	go c.Close()
}

// Close releases every lease, stops the coordinator and closes its client.
// Holds in progress fail with ErrClosed.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, e := range c.entries {
		switch e.state {
		case stHeld:
			c.releaseLocked(e)
		case stAcquiring:
			a := e.attempt
			e.attempt = nil
			e.state = stReleasing
			close(a.abandon)
			a.err = ErrClosed
			close(a.done)
			c.signal(e)
		}
	}
	close(c.stop)
	c.mu.Unlock()
	err := c.pubsub.Close()
	c.done.Wait()
	if cerr := c.client.Close(); err == nil {
		err = cerr
	}
	return err
}
