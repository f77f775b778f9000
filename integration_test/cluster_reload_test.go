package integration_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reloads of cluster mode through Caddy's admin API, on real bin/caddy
// processes (see cluster_test.go).

// reloadInstance replaces the site of instance in (started by
// startInstance in dir) with sq and upstream, through the admin API's
// /load as `caddy reload` does, and returns once the new config runs.
func reloadInstance(t *testing.T, dir string, in *instance, sq, upstream string) {
	t.Helper()
	cfgPath := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", in.port-9280))
	old, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	siteStart := fmt.Sprintf(":%d {\n", in.port)
	head, _, found := strings.Cut(string(old), siteStart)
	if !found {
		t.Fatalf("no site %q in %s", siteStart, cfgPath)
	}
	cfg := fmt.Sprintf("%s%s\t%s\n\t%s\n}\n", head, siteStart,
		strings.ReplaceAll(sq, "\n", "\n\t"), strings.ReplaceAll(upstream, "\n", "\n\t"))
	writeFile(t, cfgPath, cfg)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/load", in.admin), strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	// Caddy skips a /load of the config it runs; a reload must happen.
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := clusterClient.Do(req)
	if err != nil {
		t.Fatalf("reload of caddy %d: %v", in.port-9280, err)
	}
	if body := readBody(resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("reload of caddy %d: %s %s", in.port-9280, resp.Status, body)
	}
}

// clusterView is the cluster part of a zone in the admin API.
type clusterView struct {
	Address   string `json:"address"`
	KeyPrefix string `json:"key_prefix"`
	Node      string `json:"node"`
	Held      int    `json:"leases_held"`
	Acquiring int    `json:"leases_waiting"`
}

// zoneView is the admin API's view of the zone "default" of an instance.
type zoneView struct {
	Waiting int          `json:"waiting"`
	Cluster *clusterView `json:"cluster"`
}

func defaultZone(t *testing.T, in *instance) zoneView {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/session_queue/zones", in.admin))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var zones []struct {
		Zone string `json:"zone"`
		zoneView
	}
	if err := json.NewDecoder(resp.Body).Decode(&zones); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		if z.Zone == "default" {
			if z.Cluster == nil {
				t.Fatalf("caddy %d: zone default without cluster mode", in.port-9280)
			}
			return z.zoneView
		}
	}
	t.Fatalf("caddy %d: no zone default", in.port-9280)
	return zoneView{}
}

// fencedReply is a reply's status, its fence (echoed by fencedUpstream)
// and whether the reloaded config served it.
type fencedReply struct {
	status   int
	fence    uint64
	reloaded bool
	err      error
}

// fencedUpstream passes the fence upstream, as fenceUpstream does, and
// back down to the client.
const fencedUpstream = "reverse_proxy %s {\n\theader_up X-Fence {http.session_queue.fence}\n\theader_down X-Fence {http.session_queue.fence}%s\n}"

func fencedSite(backend, extra string) string { return fmt.Sprintf(fencedUpstream, backend, extra) }

// reloadedSite is fencedSite as the reload puts it: replies say so.
func reloadedSite(backend string) string {
	return fencedSite(backend, "\n\theader_down X-Reloaded 1")
}

// fencedGet sends a request of session id to in, in the background.
func fencedGet(in *instance, path, id string) <-chan fencedReply {
	done := make(chan fencedReply, 1)
	go func() {
		req, _ := http.NewRequest("GET", in.url(path), nil)
		req.Header.Set("Cookie", "PHPSESSID="+id)
		resp, err := clusterClient.Do(req)
		if err != nil {
			done <- fencedReply{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fence, _ := strconv.ParseUint(resp.Header.Get("X-Fence"), 10, 64)
		done <- fencedReply{status: resp.StatusCode, fence: fence, reloaded: resp.Header.Get("X-Reloaded") == "1"}
	}()
	return done
}

// runningOnBackend waits until the backend runs a request of session id.
func runningOnBackend(t *testing.T, b *overlapBackend, id string) {
	t.Helper()
	waitUntil(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		s := b.sessions[id]
		return s != nil && (s.writer || s.readers > 0)
	})
}

// TestClusterReloadKeepsLease: a reload that leaves the cluster settings
// as they are keeps the coordinator and its leases. A request admitted
// before the reload keeps the session's lease: the next request of the
// session on the same instance runs under the same lease (same fence), and
// a request of the session on another instance waits until the reloaded
// instance's request ends.
func TestClusterReloadKeepsLease(t *testing.T) {
	dir := backendDir(t)
	sock := startRedis(t, dir)
	b := startOverlapBackend(t, 3)
	sq := clusterDirective(sock, "")
	ins := []*instance{
		startInstance(t, dir, 0, sq, fencedSite(b.addr, "")),
		startInstance(t, dir, 1, sq, fencedSite(b.addr, "")),
	}
	a, other := ins[0], ins[1]
	id := newSessionID()

	first := fencedGet(a, "/?gate=1", id)
	runningOnBackend(t, b, id)
	before := defaultZone(t, a).Cluster
	reloadInstance(t, dir, a, sq, reloadedSite(b.addr))
	after := defaultZone(t, a).Cluster
	t.Logf("reloaded with the same cluster settings while a request runs: node %s -> %s, leases held %d -> %d",
		before.Node, after.Node, before.Held, after.Held)
	if after.Node != before.Node || after.Held != 1 {
		t.Fatal("the reload replaced the coordinator, or dropped the lease of the running request")
	}

	// The next request of the session, queued locally behind the first,
	// runs under the lease the first was admitted under.
	second := fencedGet(a, "/?gate=2", id)
	waitUntil(t, func() bool { return defaultZone(t, a).Waiting == 1 })
	b.openGate("1")
	r1 := <-first
	runningOnBackend(t, b, id)
	// Reload again while the second request runs, and ask for the session
	// on the other instance: it must wait for the second request's end.
	reloadInstance(t, dir, a, sq, reloadedSite(b.addr))
	third := fencedGet(other, "/", id)
	waitUntil(t, func() bool { return defaultZone(t, other).Cluster.Acquiring == 1 })
	if held := defaultZone(t, a).Cluster; held.Held != 1 || held.Node != before.Node {
		t.Fatalf("after the second reload: node %s, %d leases held; want %s, 1", held.Node, held.Held, before.Node)
	}
	b.openGate("2")
	r2, r3 := <-second, <-third
	r4 := <-fencedGet(a, "/", id)
	overlaps, fenceBack, _, _ := b.counts()
	t.Logf("statuses %d %d %d %d, fences %d %d %d %d, served by the reloaded config: %v %v %v; %d overlaps, %d fences back",
		r1.status, r2.status, r3.status, r4.status, r1.fence, r2.fence, r3.fence, r4.fence,
		r1.reloaded, r2.reloaded, r4.reloaded, overlaps, fenceBack)
	for _, r := range []fencedReply{r1, r2, r3, r4} {
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("a request failed: %d %v", r.status, r.err)
		}
	}
	if overlaps != 0 || fenceBack != 0 {
		t.Fatal("the other instance ran the session beside the reloaded one")
	}
	if r1.reloaded || !r2.reloaded || !r4.reloaded {
		t.Fatal("the reload did not take effect for the requests after it")
	}
	if r2.fence != r1.fence {
		t.Fatalf("the request queued behind the reload's running one got fence %d, want the kept lease's %d", r2.fence, r1.fence)
	}
	if r3.fence <= r2.fence || r4.fence <= r3.fence {
		t.Fatal("fences did not grow with each grant")
	}
}

// redisCLI runs redis-cli against the redis-server on sock.
func redisCLI(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-s", sock}, args...)...).Output()
	if err != nil {
		t.Fatalf("redis-cli %v: %v", args, err)
	}
	return string(out)
}

var hashTag = regexp.MustCompile(`\{([0-9a-f]{32})\}`)

// sessionNames are the Redis names of the sessions with keys under prefix.
func sessionNames(t *testing.T, sock, prefix string) []string {
	t.Helper()
	var names []string
	for _, m := range hashTag.FindAllStringSubmatch(redisCLI(t, sock, "--scan", "--pattern", prefix+"*"), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	slices.Sort(names)
	return names
}

// channels are the nodes listening on their channel under prefix.
func channels(t *testing.T, sock, prefix string) []string {
	t.Helper()
	var nodes []string
	for line := range strings.SplitSeq(redisCLI(t, sock, "PUBSUB", "CHANNELS", prefix+"n:*"), "\n") {
		if node, ok := strings.CutPrefix(strings.TrimSpace(line), prefix+"n:"); ok {
			nodes = append(nodes, node)
		}
	}
	return nodes
}

// holders counts the sessions of names whose lease someone holds.
func holders(t *testing.T, sock, prefix string, names []string) int {
	t.Helper()
	n := 0
	for _, name := range names {
		if strings.TrimSpace(redisCLI(t, sock, "HGET", prefix+"{"+name+"}", "holder")) != "" {
			n++
		}
	}
	return n
}

// connectedClients is INFO clients' count, which includes redis-cli's.
func connectedClients(t *testing.T, sock string) int {
	t.Helper()
	for line := range strings.SplitSeq(redisCLI(t, sock, "INFO", "clients"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatal("no connected_clients in INFO clients")
	return 0
}

// reloadDirective is session_queue in cluster mode with the connection
// settings a reload changes.
func reloadDirective(sock, secret, prefix, leaseTTL string) string {
	sq := clusterDirective(sock, fmt.Sprintf("key_prefix %s\nlease_ttl %s\nop_timeout 500ms", prefix, leaseTTL))
	return strings.Replace(sq, clusterSecret, secret, 1)
}

// TestClusterReloadChangesConnection: a reload that changes the Redis
// address, the secret, the key prefix or lease_ttl starts a new
// coordinator. A request admitted under the old one keeps its lease there
// until it ends, then the old coordinator gives the lease back and closes;
// requests after the reload use the new settings, and instances that
// share them do not overlap. With the session names and Redis unchanged
// (lease_ttl), a request of the busy session under the new settings waits
// for the one admitted under the old.
func TestClusterReloadChangesConnection(t *testing.T) {
	for _, change := range []string{"address", "secret", "key_prefix", "lease_ttl"} {
		t.Run(change, func(t *testing.T) {
			dir := backendDir(t)
			oldSock := startRedis(t, dir)
			newSock, oldSecret, newSecret, oldPrefix, newPrefix := oldSock, clusterSecret, clusterSecret, "sq:a:", "sq:a:"
			oldTTL, newTTL := "3s", "3s"
			switch change {
			case "address":
				newSock = startRedis(t, backendDir(t))
			case "secret":
				newSecret = "another-integration-secret-9876543210"
			case "key_prefix":
				newPrefix = "sq:b:"
			case "lease_ttl":
				newTTL = "4s"
			}
			b := startOverlapBackend(t, 3)
			before, after := reloadDirective(oldSock, oldSecret, oldPrefix, oldTTL), reloadDirective(newSock, newSecret, newPrefix, newTTL)
			ins := []*instance{
				startInstance(t, dir, 0, before, fencedSite(b.addr, "")),
				startInstance(t, dir, 1, before, fencedSite(b.addr, "")),
			}
			// busy's request is admitted under the old settings and runs
			// across the reload; seen's session is known under them.
			busy, seen := newSessionID(), newSessionID()
			running := fencedGet(ins[0], "/?gate=old", busy)
			runningOnBackend(t, b, busy)
			if r := <-fencedGet(ins[1], "/", seen); r.status != http.StatusOK {
				t.Fatalf("before the reload: %d %v", r.status, r.err)
			}
			oldNames := sessionNames(t, oldSock, oldPrefix)
			oldNodes := []string{defaultZone(t, ins[0]).Cluster.Node, defaultZone(t, ins[1]).Cluster.Node}
			if len(oldNames) != 2 {
				t.Fatalf("before the reload, %d sessions named in Redis, want 2", len(oldNames))
			}

			for _, in := range ins {
				reloadInstance(t, dir, in, after, reloadedSite(b.addr))
			}
			for i, in := range ins {
				c := defaultZone(t, in).Cluster
				if c.Node == oldNodes[i] || c.KeyPrefix != newPrefix || c.Address != newSock {
					t.Fatalf("caddy %d after the reload: node %s (was %s), key prefix %q, address %s: the new settings are not in force",
						i, c.Node, oldNodes[i], c.KeyPrefix, c.Address)
				}
			}
			// The old coordinator still holds busy's lease, for the request
			// admitted under it, and still listens on its channel.
			if !slices.Contains(channels(t, oldSock, oldPrefix), oldNodes[0]) {
				t.Fatal("the old coordinator closed while a request admitted under it runs")
			}
			if n := holders(t, oldSock, oldPrefix, oldNames); n != 1 {
				t.Fatalf("%d leases held in the old Redis while the request admitted before the reload runs, want 1", n)
			}

			// Under the new settings: seen's session gets a name there (a new
			// one if the secret changed), and load spread over both
			// instances runs without overlaps.
			r := <-fencedGet(ins[0], "/", seen)
			if change == "secret" {
				// The old secret's check stands for a lease time after its
				// last acquire: until then the new secret is refused (it
				// would not exclude instances still on the old one).
				refusedFor := time.Now()
				for r.status == http.StatusServiceUnavailable && time.Since(refusedFor) < 3*time.Second+2*time.Second {
					time.Sleep(50 * time.Millisecond)
					r = <-fencedGet(ins[0], "/", seen)
				}
				t.Logf("changed secret, same key_prefix: requests refused for %v after the reload", time.Since(refusedFor).Round(10*time.Millisecond))
			}
			if r.status != http.StatusOK || !r.reloaded {
				t.Fatalf("after the reload: %d %v, served by the reloaded config: %v", r.status, r.err, r.reloaded)
			}
			newNames := sessionNames(t, newSock, newPrefix)
			renamed := slices.DeleteFunc(slices.Clone(newNames), func(n string) bool { return slices.Contains(oldNames, n) })
			t.Logf("changed %s: sessions named under the old settings %d, under the new %d, of which new names %d",
				change, len(oldNames), len(newNames), len(renamed))
			switch {
			case change == "secret" && len(renamed) != 1:
				t.Fatal("after a change of secret, the session's name did not change")
			case change == "lease_ttl" && !slices.Equal(newNames, oldNames):
				t.Fatal("after a change of lease_ttl, the sessions' names changed")
			case (change == "address" || change == "key_prefix") && (len(newNames) != 1 || len(renamed) != 0):
				t.Fatal("after the reload, the session is not named under the new settings, or renamed")
			}
			// The same names in the same Redis: the busy session waits for
			// the request admitted under the old settings.
			var waiting <-chan fencedReply
			if change == "lease_ttl" {
				waiting = fencedGet(ins[1], "/", busy)
				waitUntil(t, func() bool { return defaultZone(t, ins[1]).Cluster.Acquiring == 1 })
			}
			res := runLoad(t, ins, 50, 8)
			overlaps, fenceBack, _, _ := b.counts()
			t.Logf("changed %s: load under the new settings beside a request admitted under the old: statuses %v, %d errors, %d overlaps, %d fences back",
				change, res.statuses, res.errors, overlaps, fenceBack)
			if overlaps != 0 || fenceBack != 0 || res.errors != 0 || res.statuses[200] != 50*8 {
				t.Fatal("overlaps or failures under the new settings")
			}

			// The request admitted under the old settings ends: the old
			// coordinators give the lease back and close.
			b.openGate("old")
			if r := <-running; r.status != http.StatusOK || r.reloaded {
				t.Fatalf("the request admitted before the reload: %d %v", r.status, r.err)
			}
			waitUntil(t, func() bool {
				listening := channels(t, oldSock, oldPrefix)
				return !slices.Contains(listening, oldNodes[0]) && !slices.Contains(listening, oldNodes[1])
			})
			// (Under lease_ttl's change, the waiting request holds busy's lease
			// for a moment.)
			waitUntil(t, func() bool { return holders(t, oldSock, oldPrefix, oldNames) == 0 })
			if change == "address" {
				waitUntil(t, func() bool { return connectedClients(t, oldSock) == 1 })
			}
			if waiting == nil {
				waiting = fencedGet(ins[1], "/", busy)
			}
			if r := <-waiting; r.status != http.StatusOK {
				t.Fatalf("the session of the request admitted before the reload, afterwards: %d %v", r.status, r.err)
			}
			if overlaps, _, _, _ := b.counts(); overlaps != 0 {
				t.Fatal("overlap")
			}
			t.Logf("changed %s: the old coordinators gave their leases back and closed once the request admitted under them ended", change)
		})
	}
}
