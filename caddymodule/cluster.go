package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessionqueue/caddy-session-queue/cluster"
	"github.com/sessionqueue/caddy-session-queue/queue"
)

// Defaults of cluster redis.
const (
	DefaultRedisAddress = "127.0.0.1:6379"
	DefaultLeaseTTL     = 30 * time.Second
	DefaultOpTimeout    = 250 * time.Millisecond
)

// ClusterConfig makes several Caddy instances serialize each session
// together, through a shared backend. Every instance of a zone must use
// the same settings.
type ClusterConfig struct {
	// Redis coordinates the instances through one Redis server (or a
	// Sentinel-managed primary's address).
	Redis *RedisCluster `json:"redis,omitempty"`
}

// RedisCluster coordinates Caddy instances through Redis: an instance runs
// requests of a session only while it holds the session's lease there.
// Only the head of an instance's local queue asks for the lease, which
// then serves the instance's queue for that session until it empties or
// another instance waits; instances get a session's lease in order of
// arrival at Redis, and are woken by a pub/sub push.
type RedisCluster struct {
	// Address is host:port, or the path of a unix socket. Default:
	// 127.0.0.1:6379.
	Address string `json:"address,omitempty"`
	// Username and Password authenticate to Redis (ACL or requirepass).
	// {env.*} and {file.*} placeholders are resolved at Provision.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the Redis database number. Default: 0.
	DB int `json:"db,omitempty"`
	// TLS, when set, connects to Redis over TLS.
	TLS *RedisTLS `json:"tls,omitempty"`
	// Secret keys the names of sessions in Redis (HMAC-SHA256 of the queue
	// key), so that Redis never sees a session ID. Every instance of the
	// zone must share it. {env.*} and {file.*} placeholders are resolved
	// at Provision. Required.
	Secret string `json:"secret,omitempty"`
	// KeyPrefix starts every Redis key and channel name. Default:
	// "sq:<zone>:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// LeaseTTL is how long a session's lease outlives its holder's last
	// renewal (every lease_ttl/3): an instance that crashes holds its
	// sessions that long. Keep it at or above the backend's own time limit
	// (PHP's max_execution_time), so that requests a crashed instance left
	// running are still covered. Default: 30s.
	LeaseTTL caddy.Duration `json:"lease_ttl,omitempty"`
	// OpTimeout bounds each Redis call. Default: 250ms.
	OpTimeout caddy.Duration `json:"op_timeout,omitempty"`
	// OnError is what happens to a request whose session's lease this
	// instance does not hold when Redis cannot be asked: "reject" answers
	// 503 with Retry-After (no two instances ever run one session);
	// "local" serializes the session on this instance only, and counts
	// and logs it. Default: "reject".
	OnError string `json:"on_error,omitempty"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// CAFile is a PEM bundle of the CAs that Redis's certificate must chain
	// to. Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`
}

// clusterSettings are a zone's cluster settings with defaults applied and
// placeholders resolved; comparable, so that a reload can tell whether
// the connection must change.
type clusterSettings struct {
	conn    clusterConn
	onError string
}

// clusterConn is what a coordinator is built from: a change of any of it
// takes a new coordinator.
type clusterConn struct {
	network, address, username, password string
	db                                   int
	tls                                  bool
	caFile                               string
	secret, prefix                       string
	leaseTTL, opTimeout                  time.Duration
}

// provision applies defaults, resolves placeholders and validates.
func (c *ClusterConfig) provision(zone string) (*clusterSettings, error) {
	r := c.Redis
	if r == nil {
		return nil, errors.New("session_queue: cluster: a backend is required (cluster redis { ... })")
	}
	repl := caddy.NewReplacer()
	resolve := func(option, v string) (string, error) {
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("session_queue: cluster redis: %s: %v", option, err)
		}
		return out, nil
	}
	var s clusterSettings
	var err error
	s.conn.address = r.Address
	if s.conn.address == "" {
		s.conn.address = DefaultRedisAddress
	}
	s.conn.network = "tcp"
	if strings.HasPrefix(s.conn.address, "unix/") {
		s.conn.network, s.conn.address = "unix", strings.TrimPrefix(s.conn.address, "unix/")
	} else if strings.HasPrefix(s.conn.address, "/") {
		s.conn.network = "unix"
	}
	if r.Username != "" {
		if s.conn.username, err = resolve("username", r.Username); err != nil {
			return nil, err
		}
	}
	if r.Password != "" {
		if s.conn.password, err = resolve("password", r.Password); err != nil {
			return nil, err
		}
	}
	if r.Secret == "" {
		return nil, errors.New("session_queue: cluster redis: secret: required (shared by every instance; keys the Redis names of sessions)")
	}
	if s.conn.secret, err = resolve("secret", r.Secret); err != nil {
		return nil, err
	}
	if len(s.conn.secret) < 16 {
		return nil, errors.New("session_queue: cluster redis: secret: must be at least 16 characters")
	}
	if r.DB < 0 {
		return nil, fmt.Errorf("session_queue: cluster redis: db: must not be negative, got %d", r.DB)
	}
	s.conn.db = r.DB
	if r.TLS != nil {
		s.conn.tls, s.conn.caFile = true, r.TLS.CAFile
		if s.conn.caFile != "" {
			if _, err := os.Stat(s.conn.caFile); err != nil {
				return nil, fmt.Errorf("session_queue: cluster redis: tls: %v", err)
			}
		}
	}
	s.conn.prefix = r.KeyPrefix
	if s.conn.prefix == "" {
		s.conn.prefix = "sq:" + zone + ":"
	}
	s.conn.leaseTTL, s.conn.opTimeout = time.Duration(r.LeaseTTL), time.Duration(r.OpTimeout)
	if s.conn.leaseTTL == 0 {
		s.conn.leaseTTL = DefaultLeaseTTL
	}
	if s.conn.opTimeout == 0 {
		s.conn.opTimeout = DefaultOpTimeout
	}
	if s.conn.opTimeout < 0 {
		return nil, fmt.Errorf("session_queue: cluster redis: op_timeout: must be positive, got %s", s.conn.opTimeout)
	}
	// Renewals every lease_ttl/3 must be able to fail once and still land
	// before the lease's margin.
	if s.conn.leaseTTL < 4*s.conn.opTimeout {
		return nil, fmt.Errorf("session_queue: cluster redis: lease_ttl: must be at least 4 × op_timeout (%s), got %s", 4*s.conn.opTimeout, s.conn.leaseTTL)
	}
	s.onError = r.OnError
	if s.onError == "" {
		s.onError = "reject"
	}
	if s.onError != "reject" && s.onError != "local" {
		return nil, fmt.Errorf("session_queue: cluster redis: on_error: want reject or local, got %q", s.onError)
	}
	return &s, nil
}

// newCoordinator connects a zone to Redis. go-redis dials lazily: nothing
// here waits for Redis.
func (c clusterConn) newCoordinator(zone string, busy func(string) bool, observer cluster.Observer) (*cluster.Coordinator, error) {
	opts := &redis.Options{
		Network: c.network, Addr: c.address, Username: c.username, Password: c.password, DB: c.db,
		// One connection per waiting session would be wasteful; what waits
		// here is a few scripts at a time, but a burst of new sessions queues for connections.
		PoolSize: 256,
	}
	if c.tls {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if host, _, found := strings.Cut(c.address, ":"); found {
			cfg.ServerName = host
		}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("session_queue: cluster redis: tls: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("session_queue: cluster redis: tls: no certificate in %s", c.caFile)
			}
			cfg.RootCAs = pool
		}
		opts.TLSConfig = cfg
	}
	cluster.Bound(opts, c.opTimeout)
	return cluster.New(redis.NewClient(opts), cluster.Config{
		Prefix: c.prefix, Secret: []byte(c.secret), LeaseTTL: c.leaseTTL, OpTimeout: c.opTimeout,
		Busy: busy, Observer: observer,
	}), nil
}

// clusterRuntime is a zone's cluster mode in force.
type clusterRuntime struct {
	settings clusterSettings
	coord    *cluster.Coordinator
}

// zoneCluster is the cluster part of a zone.
type zoneCluster struct {
	runtime atomic.Pointer[clusterRuntime]
	logger  *zap.Logger
	metrics clusterMetrics
}

// setCluster puts a zone's cluster settings in force: unchanged connection
// settings keep the coordinator and its leases; changed ones start a new
// coordinator, and the old one gives its leases back as the requests
// admitted under them end.
func (z *zone) setCluster(s *clusterSettings) {
	old := z.cluster.runtime.Load()
	switch {
	case s == nil:
		z.cluster.runtime.Store(nil)
	case old != nil && old.settings.conn == s.conn:
		z.cluster.runtime.Store(&clusterRuntime{settings: *s, coord: old.coord})
		return
	default:
		coord, err := s.conn.newCoordinator(z.name, z.busy, &z.cluster.metrics)
		if err != nil {
			// Provision checked what can fail here; a CA file removed since
			// leaves the zone without cluster mode, loudly.
			z.cluster.logger.Error("cluster mode off", zap.String("zone", z.name), zap.Error(err))
			z.cluster.runtime.Store(nil)
		} else {
			z.cluster.runtime.Store(&clusterRuntime{settings: *s, coord: coord})
			z.cluster.logger.Info("cluster mode on", zap.String("zone", z.name), zap.String("redis", s.conn.address),
				zap.String("key_prefix", s.conn.prefix), zap.String("node", coord.Node()), zap.String("on_error", s.onError))
		}
	}
	if old != nil {
		old.coord.Retire()
	}
}

// closeCluster gives every lease back when the zone is destructed.
func (z *zone) closeCluster() {
	if old := z.cluster.runtime.Swap(nil); old != nil {
		_ = old.coord.Close()
	}
}

// clusterHold is a request's leases on its session's keys.
type clusterHold struct {
	coord  *cluster.Coordinator
	leases []*cluster.Lease
}

// fence is the fencing token of the session's lease, 0 without one.
func (h clusterHold) fence() uint64 {
	if len(h.leases) == 0 {
		return 0
	}
	return h.leases[0].Fence()
}

// drop gives the leases back; after the local turns, so that a lease
// kept for the local queue sees the successor.
func (h clusterHold) drop() {
	for _, l := range h.leases {
		h.coord.Drop(l)
	}
}

// holdCluster takes, for a request holding the local turns of keys (in
// sorted order), the session's leases on them, waiting until deadline at
// most. Without cluster mode it holds nothing. With on_error local, a
// request Redis cannot serve is admitted on local serialization alone.
func (z *zone) holdCluster(ctx context.Context, keys []string, deadline time.Time) (clusterHold, error) {
	if err := z.awaitStart(ctx, deadline); err != nil {
		return clusterHold{}, err
	}
	for {
		rt := z.cluster.runtime.Load()
		if rt == nil {
			return clusterHold{}, nil
		}
		hold := clusterHold{coord: rt.coord}
		waitCtx, cancel := ctx, context.CancelFunc(func() {})
		if !deadline.IsZero() {
			waitCtx, cancel = context.WithDeadline(ctx, deadline)
		}
		var err error
		for _, key := range keys {
			var l *cluster.Lease
			if l, err = rt.coord.Hold(waitCtx, key); err != nil {
				break
			}
			hold.leases = append(hold.leases, l)
		}
		cancel()
		if err == nil {
			return hold, nil
		}
		hold.drop()
		switch {
		case errors.Is(err, cluster.ErrClosed):
			continue // a reload replaced the coordinator meanwhile
		case errors.Is(err, cluster.ErrSecretMismatch):
			// A configuration error, not an outage: on_error local would
			// run the session beside the other instances' requests.
			return clusterHold{}, errClusterSecretMismatch
		case errors.Is(err, cluster.ErrUnavailable):
			if rt.settings.onError == "local" {
				z.cluster.metrics.localAdmissions.Inc()
				return clusterHold{}, nil
			}
			return clusterHold{}, errClusterUnavailable
		case ctx.Err() != nil:
			return clusterHold{}, ctx.Err()
		default:
			return clusterHold{}, queue.ErrTimeout
		}
	}
}

// awaitStart holds back, until its config has started, a request to a zone
// made for cluster mode: Caddy starts its apps in no fixed order, and
// serves as soon as the http app has started, possibly before the
// session_queue app has put cluster mode in force. Admitted meanwhile, the
// request would run beside another instance's of its session.
func (z *zone) awaitStart(ctx context.Context, deadline time.Time) error {
	if !z.clusterAtStart {
		return nil
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-z.started:
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return queue.ErrTimeout
	}
	if z.cluster.runtime.Load() == nil && z.closed.Load() {
		// Destructed before its config started (the start failed).
		return errClusterUnavailable
	}
	return nil
}

// errClusterUnavailable refuses a request whose lease Redis cannot grant
// (on_error reject).
var errClusterUnavailable = errors.New("session_queue: cluster: redis unavailable")

// errClusterSecretMismatch refuses a request because other instances use
// the zone's key prefix with another secret.
var errClusterSecretMismatch = errors.New("session_queue: cluster redis: secret: other instances use this key_prefix with a different secret")

// linkCluster shares a regeneration with the other instances: a request
// there carrying newKey's ID queues behind this instance's requests on
// rootKey.
func (z *zone) linkCluster(newKey, rootKey string) {
	rt := z.cluster.runtime.Load()
	if rt == nil {
		return
	}
	if err := rt.coord.Link(newKey, rootKey); err != nil {
		z.cluster.logger.Warn("regeneration not shared with the other instances: redis unavailable",
			zap.String("zone", z.name), zap.Error(err))
	}
}

// clusterStatus is the admin API's view of a zone's cluster mode.
type clusterStatus struct {
	Backend   string `json:"backend"`
	Address   string `json:"address"`
	KeyPrefix string `json:"key_prefix"`
	OnError   string `json:"on_error"`
	LeaseTTL  string `json:"lease_ttl"`
	cluster.Stats
}

func (z *zone) clusterStatus() *clusterStatus {
	rt := z.cluster.runtime.Load()
	if rt == nil {
		return nil
	}
	return &clusterStatus{
		Backend: "redis", Address: rt.settings.conn.address, KeyPrefix: rt.settings.conn.prefix,
		OnError: rt.settings.onError, LeaseTTL: rt.settings.conn.leaseTTL.String(), Stats: rt.coord.Stats(),
	}
}

var (
	redisSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "redis_seconds",
		Help:    "Latency of cluster mode's Redis calls, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"zone", "op"})
	redisErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "redis_errors_total",
		Help: "Cluster mode's Redis calls that failed or timed out, by operation.",
	}, []string{"zone", "op"})
	clusterDegraded = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "cluster_degraded",
		Help: "1 while this instance cannot reach the zone's Redis.",
	}, []string{"zone"})
	clusterLocalTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "cluster_local_admissions_total",
		Help: "Requests admitted on this instance's queue alone because Redis was unavailable (on_error local).",
	}, []string{"zone"})
	leaseTakeoversTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "lease_takeovers_total",
		Help: "Leases this instance was granted after another holder's lease expired.",
	}, []string{"zone"})
	leaseLostTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "lease_expiries_total",
		Help: "Leases this instance held and found expired on renewal.",
	}, []string{"zone"})
	handoffsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "cluster_handoffs_total",
		Help: "Leases this instance released straight to a waiting instance.",
	}, []string{"zone"})
	secretMismatchesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "session_queue", Name: "cluster_secret_mismatches_total",
		Help: "Requests refused because other instances use the zone's Redis key prefix with another secret.",
	}, []string{"zone"})
)

func init() {
	collectors = append(collectors, redisSeconds, redisErrorsTotal, clusterDegraded, clusterLocalTotal,
		leaseTakeoversTotal, leaseLostTotal, handoffsTotal, secretMismatchesTotal)
}

// clusterMetrics are one zone's cluster series; it is the zone's
// cluster.Observer.
type clusterMetrics struct {
	zone            string
	logger          *zap.Logger
	degraded        prometheus.Gauge
	localAdmissions prometheus.Counter
	takeovers       prometheus.Counter
	lost            prometheus.Counter
	handoffs        prometheus.Counter
	mismatches      prometheus.Counter
	// lastMismatchLog is the UnixNano time of the last error logged for a
	// secret mismatch: once a minute is loud enough.
	lastMismatchLog atomic.Int64
	// lastErr is the error of the last Redis call that failed, which the
	// warning that Redis became unavailable names: a wrong CA or password
	// shows there, not only in the counters.
	lastErr atomic.Pointer[error]
}

func newClusterMetrics(zone string, logger *zap.Logger) clusterMetrics {
	return clusterMetrics{
		zone:            zone,
		logger:          logger,
		degraded:        clusterDegraded.WithLabelValues(zone),
		localAdmissions: clusterLocalTotal.WithLabelValues(zone),
		takeovers:       leaseTakeoversTotal.WithLabelValues(zone),
		lost:            leaseLostTotal.WithLabelValues(zone),
		handoffs:        handoffsTotal.WithLabelValues(zone),
		mismatches:      secretMismatchesTotal.WithLabelValues(zone),
	}
}

func deleteClusterMetrics(zone string) {
	for _, op := range []string{"acquire", "release", "renew", "link", "ping"} {
		redisSeconds.DeleteLabelValues(zone, op)
		redisErrorsTotal.DeleteLabelValues(zone, op)
	}
	for _, v := range []*prometheus.CounterVec{clusterLocalTotal, leaseTakeoversTotal, leaseLostTotal, handoffsTotal, secretMismatchesTotal} {
		v.DeleteLabelValues(zone)
	}
	clusterDegraded.DeleteLabelValues(zone)
}

func (m *clusterMetrics) Call(op string, took time.Duration, err error) {
	redisSeconds.WithLabelValues(m.zone, op).Observe(took.Seconds())
	if err != nil {
		redisErrorsTotal.WithLabelValues(m.zone, op).Inc()
		m.lastErr.Store(&err)
	}
}

func (m *clusterMetrics) Degraded(down bool) {
	if down {
		m.degraded.Set(1)
		fields := []zap.Field{zap.String("zone", m.zone)}
		if err := m.lastErr.Load(); err != nil {
			fields = append(fields, zap.Error(*err))
		}
		m.logger.Warn("redis unavailable: sessions whose lease this instance does not hold are refused (on_error reject) or serialized on this instance only (on_error local)",
			fields...)
		return
	}
	m.degraded.Set(0)
	m.logger.Info("redis available again", zap.String("zone", m.zone))
}

func (m *clusterMetrics) TookOver()  { m.takeovers.Inc() }
func (m *clusterMetrics) Lost()      { m.lost.Inc() }
func (m *clusterMetrics) HandedOff() { m.handoffs.Inc() }

func (m *clusterMetrics) SecretMismatch() {
	m.mismatches.Inc()
	now, last := time.Now().UnixNano(), m.lastMismatchLog.Load()
	if last != 0 && time.Duration(now-last) < time.Minute || !m.lastMismatchLog.CompareAndSwap(last, now) {
		return
	}
	m.logger.Error("requests refused: other instances use this zone's key_prefix in Redis with a different secret, so their leases and this instance's would not exclude each other; give every instance of the zone the same secret (or, while changing it, a new key_prefix)",
		zap.String("zone", m.zone))
}

// linkClusterRegeneration shares the link oldID -> newID that this
// instance's lineages just made: newID's queue key names the lease of the
// lineage's root.
func (z *zone) linkClusterRegeneration(oldID, newID string) {
	if z.cluster.runtime.Load() == nil {
		return
	}
	root, pin := z.lineages.Resolve(oldID)
	defer pin.Release()
	pattern := z.keying.epochs.Load().current.pattern
	z.linkCluster(pattern.Key(newID), pattern.Key(root))
}
