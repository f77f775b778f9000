package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Cluster mode runs several real bin/caddy processes (ports 9280-9282,
// admin 3280-3282) in front of one overlap-detecting backend and one
// redis-server.

var (
	caddyBinOnce sync.Once
	caddyBin     string
	caddyBinErr  error
)

// buildCaddy builds cmd/caddy once per test binary.
func buildCaddy(t *testing.T) string {
	t.Helper()
	caddyBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sq-caddy-bin")
		if err != nil {
			caddyBinErr = err
			return
		}
		caddyBin = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyBin, "../cmd/caddy").CombinedOutput()
		if err != nil {
			caddyBinErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if caddyBinErr != nil {
		t.Fatal(caddyBinErr)
	}
	return caddyBin
}

// instance is one Caddy process.
type instance struct {
	port, admin int
	cmd         *exec.Cmd
	log         string
	exited      chan struct{}
}

func (in *instance) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.port, path)
}

// startInstance runs bin/caddy with the session_queue directive sq in
// front of upstream (a reverse_proxy target).
func startInstance(t *testing.T, dir string, i int, sq, upstream string) *instance {
	t.Helper()
	in := &instance{port: 9280 + i, admin: 3280 + i, log: filepath.Join(dir, fmt.Sprintf("caddy%d.log", i)), exited: make(chan struct{})}
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	skip_install_trust
	auto_https off
	grace_period 1s
	log {
		output file %s
		level DEBUG
	}
}
:%d {
	%s
	%s
}
`, in.admin, in.log, in.port, strings.ReplaceAll(sq, "\n", "\n\t"), strings.ReplaceAll(upstream, "\n", "\n\t"))
	// Caddy binds with SO_REUSEPORT: a stray process on the port would
	// silently take half the connections.
	for _, port := range []int{in.port, in.admin} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("cluster tests need port %d free: %v", port, err)
		}
		ln.Close()
	}
	cfgPath := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", i))
	writeFile(t, cfgPath, cfg)
	in.cmd = exec.Command(buildCaddy(t), "run", "--config", cfgPath, "--adapter", "caddyfile")
	in.cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir, "HOME="+dir)
	out, err := os.Create(filepath.Join(dir, fmt.Sprintf("caddy%d.out", i)))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in.cmd.Stdout, in.cmd.Stderr = out, out
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = in.cmd.Wait(); close(in.exited) }()
	t.Cleanup(func() {
		_ = in.cmd.Process.Signal(syscall.SIGCONT)
		_ = in.cmd.Process.Kill()
		<-in.exited
		if t.Failed() {
			data, _ := os.ReadFile(out.Name())
			t.Logf("caddy %d output:\n%s", i, data)
			logged, _ := os.ReadFile(in.log)
			var warnings []string
			for line := range strings.SplitSeq(string(logged), "\n") {
				if strings.Contains(line, `"warn"`) || strings.Contains(line, `"error"`) {
					warnings = append(warnings, line)
				}
			}
			t.Logf("caddy %d: %d warnings and errors logged; the first: %.2000s", i, len(warnings), strings.Join(warnings[:min(len(warnings), 5)], "\n"))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.port)); err == nil {
			c.Close()
			return in
		}
		select {
		case <-in.exited:
			data, _ := os.ReadFile(out.Name())
			t.Fatalf("caddy %d exited:\n%s", i, data)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy %d did not listen within 30s", i)
		}
	}
}

// overlapBackend counts, per session, requests that ran beside a writer
// of the same session or beyond maxReaders readers, and fences that went
// back.
type overlapBackend struct {
	maxReaders int
	mu         sync.Mutex
	sessions   map[string]*sessionLoad
	overlaps   int
	fenceBack  int
	fenced     int
	addr       string
	// gates hold requests with ?gate=NAME until openGate(NAME).
	gates map[string]chan struct{}
}

type sessionLoad struct {
	readers   int
	writer    bool
	served    int
	lastFence uint64
}

func startOverlapBackend(t *testing.T, maxReaders int) *overlapBackend {
	b := &overlapBackend{maxReaders: maxReaders, sessions: make(map[string]*sessionLoad), gates: make(map[string]chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: b}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for name, gate := range b.gates {
			if gate != nil {
				close(gate)
				b.gates[name] = nil
			}
		}
	})
	return b
}

// gate returns the channel that holds requests with ?gate=name.
func (b *overlapBackend) gate(name string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.gates[name]; !ok {
		b.gates[name] = make(chan struct{})
	}
	return b.gates[name]
}

// openGate lets the requests held at gate name (and later ones) through.
func (b *overlapBackend) openGate(name string) {
	gate := b.gate(name)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gates[name] != nil {
		close(gate)
		b.gates[name] = nil
	}
}

func (b *overlapBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("PHPSESSID")
	if err != nil {
		http.Error(w, "no session", http.StatusBadRequest)
		return
	}
	reader := r.Header.Get("X-Read") == "1"
	fence, _ := strconv.ParseUint(r.Header.Get("X-Fence"), 10, 64)
	b.mu.Lock()
	s := b.sessions[c.Value]
	if s == nil {
		s = new(sessionLoad)
		b.sessions[c.Value] = s
	}
	if s.writer || (!reader && s.readers > 0) || (reader && s.readers >= b.maxReaders) {
		b.overlaps++
	}
	if fence != 0 {
		b.fenced++
		if fence < s.lastFence {
			b.fenceBack++
		}
		s.lastFence = fence
	}
	if reader {
		s.readers++
	} else {
		s.writer = true
	}
	b.mu.Unlock()
	sleep := time.Duration(500+mrand.IntN(2500)) * time.Microsecond
	if ms := r.URL.Query().Get("ms"); ms != "" {
		n, _ := strconv.Atoi(ms)
		sleep = time.Duration(n) * time.Millisecond
	}
	if name := r.URL.Query().Get("gate"); name != "" {
		if gate := b.gate(name); gate != nil {
			<-gate
		}
	} else {
		time.Sleep(sleep)
	}
	b.mu.Lock()
	if reader {
		s.readers--
	} else {
		s.writer = false
	}
	s.served++
	b.mu.Unlock()
	io.WriteString(w, "ok\n")
}

func (b *overlapBackend) counts() (overlaps, fenceBack, fenced, sessions int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.overlaps, b.fenceBack, b.fenced, len(b.sessions)
}

var clusterClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}, Timeout: 120 * time.Second}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// loadResult counts replies by status.
type loadResult struct {
	mu       sync.Mutex
	statuses map[int]int
	errors   int
	ids      []string
}

// runLoad sends, for each of sessions sessions, perSession requests from 4
// concurrent workers, each to a random instance; a quarter are readers.
func runLoad(t *testing.T, instances []*instance, sessions, perSession int) *loadResult {
	res := &loadResult{statuses: make(map[int]int)}
	var wg sync.WaitGroup
	for range sessions {
		id := newSessionID()
		res.ids = append(res.ids, id)
		for range 4 {
			wg.Go(func() {
				for range perSession / 4 {
					in := instances[mrand.IntN(len(instances))]
					req, _ := http.NewRequest("GET", in.url("/"), nil)
					req.Header.Set("Cookie", "PHPSESSID="+id)
					if mrand.IntN(4) == 0 {
						req.Header.Set("X-Read", "1")
					}
					resp, err := clusterClient.Do(req)
					res.mu.Lock()
					if err != nil {
						if res.errors == 0 {
							t.Logf("first error: %v", err)
						}
						res.errors++
					} else {
						res.statuses[resp.StatusCode]++
					}
					res.mu.Unlock()
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			})
		}
	}
	wg.Wait()
	return res
}

// checkLogsFreeOfIDs fails the test if a session ID shows in a log.
func checkLogsFreeOfIDs(t *testing.T, instances []*instance, ids []string) {
	for _, in := range instances {
		data, _ := os.ReadFile(in.log)
		for _, id := range ids {
			if strings.Contains(string(data), id) {
				t.Fatalf("session ID in %s", in.log)
			}
		}
	}
}

const clusterSecret = "integration-test-secret-0123456789"

// clusterDirective is session_queue in cluster mode with lease_ttl 3s,
// unless extra sets it.
func clusterDirective(redisSock, extra string) string {
	if !strings.Contains(extra, "lease_ttl") {
		extra += "\nlease_ttl 3s"
	}
	return fmt.Sprintf(`session_queue {
	read_only header X-Read 1
	max_readers 3
	max_wait 60s
	cluster redis {
		address unix/%s
		secret %s
		%s
	}
}`, redisSock, clusterSecret, extra)
}

const fenceUpstream = "reverse_proxy %s {\n\theader_up X-Fence {http.session_queue.fence}\n}"

func startCluster(t *testing.T, n int, sq string, b *overlapBackend) ([]*instance, string) {
	dir := backendDir(t)
	var ins []*instance
	for i := range n {
		ins = append(ins, startInstance(t, dir, i, sq, fmt.Sprintf(fenceUpstream, b.addr)))
	}
	return ins, dir
}

// TestClusterOverlapsWithoutCluster shows the failure cluster mode fixes:
// two instances, each queueing alone, let one session's requests overlap.
func TestClusterOverlapsWithoutCluster(t *testing.T) {
	b := startOverlapBackend(t, 3)
	ins, _ := startCluster(t, 2, "session_queue {\n\tread_only header X-Read 1\n\tmax_readers 3\n}", b)
	res := runLoad(t, ins, 200, 20)
	overlaps, _, _, sessions := b.counts()
	t.Logf("2 instances without cluster: %d sessions, statuses %v, %d overlaps", sessions, res.statuses, overlaps)
	if overlaps == 0 {
		t.Fatal("no overlap without cluster mode: the test would prove nothing")
	}
}

func TestClusterNoOverlap(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			dir := backendDir(t)
			sock := startRedis(t, dir)
			b := startOverlapBackend(t, 3)
			// A generous op_timeout: the machine also runs 800 clients, and a
			// Redis call timing out would rightly refuse requests.
			ins, _ := startCluster(t, n, clusterDirective(sock, "op_timeout 1s\nlease_ttl 5s"), b)
			start := time.Now()
			res := runLoad(t, ins, 200, 20)
			overlaps, fenceBack, fenced, sessions := b.counts()
			t.Logf("%d instances with cluster: %d sessions in %v, statuses %v, %d errors, %d overlaps, %d fenced requests, %d fences gone back",
				n, sessions, time.Since(start).Round(time.Millisecond), res.statuses, res.errors, overlaps, fenced, fenceBack)
			if overlaps != 0 || fenceBack != 0 || res.errors != 0 || res.statuses[200] != 200*20 || sessions != 200 || fenced != 200*20 {
				t.Fatal("cluster mode let requests of one session overlap, or failed some")
			}
			checkLogsFreeOfIDs(t, ins, res.ids)
		})
	}
}

// TestClusterPHPIncrements: 50 concurrent increments of one PHP session
// (phpredis, no session locking) over two instances.
func TestClusterPHPIncrements(t *testing.T) {
	php := startPHP(t)
	dir := backendDir(t)
	sock := startRedis(t, dir)
	site := fmt.Sprintf("root * %s\nphp_fastcgi unix/%s", testdataDir(t, "php"), php.redisPool)
	ins := []*instance{
		startInstance(t, dir, 0, clusterDirective(sock, "op_timeout 1s\nlease_ttl 5s"), site),
		startInstance(t, dir, 1, clusterDirective(sock, "op_timeout 1s\nlease_ttl 5s"), site),
	}
	resp, err := clusterClient.Get(ins[0].url("/start.php"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "PHPSESSID" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[string]int{}
	for i := range 50 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", ins[i%2].url("/incr.php?ms=5"), nil)
			req.Header.Set("Cookie", cookie)
			resp, err := clusterClient.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[err.Error()]++
				return
			}
			statuses[resp.Status]++
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	t.Logf("50 increments over two instances: %v", statuses)
	req, _ := http.NewRequest("GET", ins[1].url("/incr.php?ms=0"), nil)
	req.Header.Set("Cookie", cookie)
	resp, err = clusterClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	if strings.TrimSpace(body) != "51" {
		t.Fatalf("after 50 increments over two instances, the next one printed %q, want 51", body)
	}
}

// metric reads one series' value off an instance's /metrics.
func metric(t *testing.T, in *instance, series string) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", in.admin))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			f, _ := new(big.Float).SetString(strings.TrimPrefix(line, series+" "))
			v, _ := f.Float64()
			return v
		}
	}
	return 0
}

func getOn(in *instance, path, id string) (int, error) {
	req, _ := http.NewRequest("GET", in.url(path), nil)
	req.Header.Set("Cookie", "PHPSESSID="+id)
	resp, err := clusterClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestClusterInstanceKilledMidTurn: the instance holding a session's lease
// is SIGKILLed while its request runs; the other instance serves the
// session once the lease has expired, not before.
func TestClusterInstanceKilledMidTurn(t *testing.T) {
	dir := backendDir(t)
	sock := startRedis(t, dir)
	b := startOverlapBackend(t, 3)
	ins, _ := startCluster(t, 2, clusterDirective(sock, ""), b)
	id := newSessionID()
	go getOn(ins[0], "/?ms=1000", id)
	waitUntil(t, func() bool { _, _, _, n := b.counts(); return n == 1 })
	killed := time.Now()
	ins[0].cmd.Process.Kill()
	status, err := getOn(ins[1], "/", id)
	took := time.Since(killed)
	t.Logf("served by the other instance %v after the holder was killed (lease_ttl 3s): %d %v", took.Round(time.Millisecond), status, err)
	if err != nil || status != 200 {
		t.Fatal("not served")
	}
	if took < 1500*time.Millisecond {
		t.Fatal("served before the killed holder's lease could have expired")
	}
	if overlaps, _, _, _ := b.counts(); overlaps != 0 {
		t.Fatal("overlap")
	}
	if v := metric(t, ins[1], `caddy_session_queue_lease_takeovers_total{zone="default"}`); v != 1 {
		t.Errorf("takeovers = %v, want 1", v)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not reached within 15s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestClusterHolderPausedPastLease: the instance holding a session is
// SIGSTOPped past lease_ttl; the other instance takes the session over
// (counted), and once resumed, the paused instance admits the session's
// requests only behind the new holder.
func TestClusterHolderPausedPastLease(t *testing.T) {
	dir := backendDir(t)
	sock := startRedis(t, dir)
	b := startOverlapBackend(t, 3)
	ins, _ := startCluster(t, 2, clusterDirective(sock, ""), b)
	id := newSessionID()
	// ins[0] takes the lease, and keeps it while a second request waits.
	first := make(chan int, 2)
	go func() { s, _ := getOn(ins[0], "/?ms=300", id); first <- s }()
	waitUntil(t, func() bool { _, _, _, n := b.counts(); return n == 1 })
	go func() { s, _ := getOn(ins[0], "/?ms=300", id); first <- s }()
	time.Sleep(50 * time.Millisecond) // let it queue locally behind the first
	if err := ins[0].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	status, err := getOn(ins[1], "/?ms=1000", id)
	took := time.Since(paused)
	t.Logf("the other instance served the session %v after the holder paused (lease_ttl 3s): %d %v", took.Round(time.Millisecond), status, err)
	if err != nil || status != 200 || took < 1500*time.Millisecond {
		t.Fatal("not taken over, or taken over before the lease could have expired")
	}
	// ins[1] holds the session again for 1 s; the resumed ins[0] must
	// queue behind it.
	second := make(chan int, 1)
	go func() { s, _ := getOn(ins[1], "/?ms=1000", id); second <- s }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.sessions[id].writer })
	if err := ins[0].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s1, s2, s3 := <-first, <-first, <-second
	overlaps, fenceBack, _, _ := b.counts()
	t.Logf("after resuming: statuses %d %d %d, %d overlaps, %d fences back", s1, s2, s3, overlaps, fenceBack)
	if overlaps != 0 || fenceBack != 0 {
		t.Fatal("the resumed holder overlapped the new one")
	}
	if v := metric(t, ins[1], `caddy_session_queue_lease_takeovers_total{zone="default"}`); v != 1 {
		t.Errorf("takeovers = %v, want 1", v)
	}
}

// faultProxy forwards TCP connections to a unix socket, adding delay to
// every chunk in each direction, or, once blackholed, swallowing
// everything (no tc netem on this kernel).
type faultProxy struct {
	addr      string
	delay     atomic.Int64
	blackhole atomic.Bool
}

func startFaultProxy(t *testing.T, sock string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{addr: ln.Addr().String()}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	pump := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			if p.blackhole.Load() {
				continue
			}
			time.Sleep(time.Duration(p.delay.Load()))
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", sock)
			if err != nil {
				c.Close()
				continue
			}
			conns.Add(2)
			go func() { defer conns.Done(); pump(up, c) }()
			go func() { defer conns.Done(); pump(c, up) }()
		}
	}()
	return p
}

// TestClusterRedisLinkSlowThenCut: one instance reaches Redis through a
// proxy that first adds 100 ms each way (everything still served, 0
// overlaps), then blackholes the link while that instance holds a
// session: it stops admitting, the other instance takes the session over
// once the lease has expired, and nothing overlaps.
func TestClusterRedisLinkSlowThenCut(t *testing.T) {
	dir := backendDir(t)
	sock := startRedis(t, dir)
	proxy := startFaultProxy(t, sock)
	proxy.delay.Store(int64(100 * time.Millisecond))
	b := startOverlapBackend(t, 3)
	sq := func(address string) string {
		return fmt.Sprintf("session_queue {\n\tread_only header X-Read 1\n\tmax_readers 3\n\tmax_wait 60s\n\tcluster redis {\n\t\taddress %s\n\t\tsecret %s\n\t\tlease_ttl 3s\n\t\top_timeout 700ms\n\t}\n}", address, clusterSecret)
	}
	ins := []*instance{
		startInstance(t, dir, 0, sq(proxy.addr), fmt.Sprintf(fenceUpstream, b.addr)),
		startInstance(t, dir, 1, sq("unix/"+sock), fmt.Sprintf(fenceUpstream, b.addr)),
	}
	res := runLoad(t, ins, 40, 8)
	overlaps, _, _, _ := b.counts()
	t.Logf("Redis 100 ms away each way for one instance: statuses %v, %d errors, %d overlaps", res.statuses, res.errors, overlaps)
	if overlaps != 0 || res.statuses[200] != 40*8 {
		t.Fatal("slow link: overlaps or failures")
	}

	id := newSessionID()
	held := make(chan int, 1)
	go func() { s, _ := getOn(ins[0], "/?ms=200", id); held <- s }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.sessions[id] != nil })
	// Keep ins[0]'s local queue busy so that it keeps the lease; this
	// request ends well before the lease could expire.
	queued := make(chan int, 1)
	go func() { s, _ := getOn(ins[0], "/?ms=1000", id); queued <- s }()
	<-held
	proxy.blackhole.Store(true)
	cut := time.Now()
	other := make(chan int, 1)
	go func() { s, _ := getOn(ins[1], "/", id); other <- s }()
	// Past its own deadline (last renewal + lease_ttl - op_timeout), the
	// cut-off instance admits nothing of the session.
	time.Sleep(2500*time.Millisecond - time.Since(cut))
	late, err := getOn(ins[0], "/", id)
	if err != nil || late != http.StatusServiceUnavailable {
		t.Fatalf("the cut-off instance answered %d %v past its lease, want 503", late, err)
	}
	status := <-other
	took := time.Since(cut)
	overlaps, fenceBack, _, _ := b.counts()
	t.Logf("link cut: the cut-off instance answered %d past its deadline; the other served the session after %v (%d); %d overlaps",
		late, took.Round(time.Millisecond), status, overlaps)
	if status != 200 || overlaps != 0 || fenceBack != 0 || <-queued != 200 {
		t.Fatalf("link cut: %d overlaps, %d fences back", overlaps, fenceBack)
	}
}
