package integration_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// TestQueuedPostWhoseClientLeavesIsDropped: an HTTP/1.1 client that sends
// a POST while its session's turn is held, and leaves while the request
// waits, must take the request out of the queue: Go's server notices a
// departed client only once the body has been read, which nothing did for
// a waiting request, so the ghost kept its place (filling max_waiting),
// went upstream for nobody and was never logged as 499. Whether the client
// leaves after its whole body or in the middle of it.
func TestQueuedPostWhoseClientLeavesIsDropped(t *testing.T) {
	g := newGateBackend(t)
	const id = "ghost-post-session-0123"
	const cookie = "PHPSESSID=" + id
	seenIDs.Store(id, true) // sent on raw connections, which the leak check does not see
	// max_wait outlasts awaitQueued's bound, so a ghost cannot leave by
	// timing out.
	loadCaddyfile(t, queuedSite(g.URL, "zone ghost\n\t\tmax_waiting 1\n\t\tmax_wait 5m"))

	for i, sent := range []string{"whole body", "half the body"} {
		holder := send(t.Context(), "/", cookie, fmt.Sprint("holder-", i))
		g.expectArrival(t, fmt.Sprint("holder-", i))

		conn, err := net.Dial("tcp", strings.TrimPrefix(caddyAddr, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := strings.Repeat("x", 1000)
		if sent == "half the body" {
			body = body[:500]
		}
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: localhost\r\nCookie: %s\r\nX-Request-Name: ghost-%d\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n%s", cookie, i, body)
		awaitQueued(t, g, "ghost", 1)
		conn.Close()

		// It leaves the queue, so the next request is queued, not refused
		// by max_waiting 1, and is the one let in after the holder.
		awaitQueued(t, g, "ghost", 0)
		next := send(t.Context(), "/", cookie, fmt.Sprint("next-", i))
		awaitQueued(t, g, "ghost", 1)
		g.let(fmt.Sprint("holder-", i))
		wait(t, holder)
		g.expectArrival(t, fmt.Sprint("next-", i))
		g.let(fmt.Sprint("next-", i))
		if r := wait(t, next); r.status != http.StatusOK {
			t.Fatalf("%s: next: status %d, want 200", sent, r.status)
		}
		if got := adminZoneNamed(t, "ghost").Requests["writer"]["canceled"]; got != uint64(i+1) {
			t.Fatalf("%s: %d writers counted canceled, want %d", sent, got, i+1)
		}
	}
	if n := loggedClientLeft(t, idgen.Hash(id)); n != 2 {
		t.Errorf("%d errors logged with status 499 for the session, want 2", n)
	}
}

// loggedClientLeft counts the errors Caddy logged with status 499 for the
// session of the given hash.
func loggedClientLeft(t *testing.T, session string) int {
	t.Helper()
	data, err := os.ReadFile(caddyLog)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		var entry struct {
			Logger string `json:"logger"`
			Status int    `json:"status"`
			Err    string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Logger == "http.log.error" &&
			entry.Status == 499 && strings.Contains(entry.Err, session) {
			n++
		}
	}
	return n
}

// TestQueuedBodyReachesBackendIntact: the body of a request that waited,
// read while it waited, reaches the backend whole, in order and with its
// length: short, exactly the bound read while waiting, longer than it, and
// chunked.
func TestQueuedBodyReachesBackendIntact(t *testing.T) {
	held := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Request-Name") == "holder" {
			<-held
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %d %s", r.ContentLength, n, hex.EncodeToString(h.Sum(nil)))
	}))
	t.Cleanup(backend.Close)
	const cookie = "PHPSESSID=queued-body-session"
	loadCaddyfile(t, queuedSite(backend.URL, "zone bodies"))

	holder := send(t.Context(), "/", cookie, "holder")
	awaitHolding(t, "bodies")
	const bound = 1 << 20 // maxQueuedBody
	sizes := []int{1000, bound, bound + 1, 3 * bound, 2*bound + 12345}
	var posts []<-chan result
	var want []string
	for i, size := range sizes {
		body := make([]byte, size)
		for j := range body {
			body[j] = byte(j*7 + j/251 + i)
		}
		sum := sha256.Sum256(body)
		var reader io.Reader = bytes.NewReader(body)
		contentLength := size
		if i == len(sizes)-1 {
			reader = io.MultiReader(reader) // unknown length: sent chunked
			contentLength = -1
		}
		want = append(want, fmt.Sprintf("%d %d %s", contentLength, size, hex.EncodeToString(sum[:])))
		posts = append(posts, post(t, cookie, fmt.Sprint("post-", i), reader))
		awaitWaiting(t, "bodies", i+1)
	}
	close(held)
	wait(t, holder)
	for i, ch := range posts {
		r := wait(t, ch)
		if r.status != http.StatusOK || r.body != want[i] {
			t.Errorf("POST of %d bytes: status %d, backend got %q, want %q", sizes[i], r.status, r.body, want[i])
		}
	}
}

// awaitHolding waits until a request holds a turn in zone.
func awaitHolding(t *testing.T, zone string) {
	t.Helper()
	eventually(t, "a request holding a turn in "+zone, func() bool {
		z, ok := zoneStatus(t, zone)
		return ok && z.Sessions == 1
	})
}

// post sends a POST of body in a goroutine, on a connection of its own.
func post(t *testing.T, cookie, name string, body io.Reader) <-chan result {
	return sendRequest(t.Context(), http.MethodPost, "/", cookie, name, nil, body)
}

// TestQueuedPostStalledMidBodyIsRefused: a waiting request whose client
// stops in the middle of its body and stays connected still gets its 503
// when max_wait runs out; the body reader blocked on it must not hold the
// answer back until the client sends more.
func TestQueuedPostStalledMidBodyIsRefused(t *testing.T) {
	g := newGateBackend(t)
	const id = "stalled-post-session-0123"
	const cookie = "PHPSESSID=" + id
	seenIDs.Store(id, true)
	loadCaddyfile(t, queuedSite(g.URL, "zone stalled\n\t\tmax_wait 300ms"))

	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")
	conn, err := net.Dial("tcp", strings.TrimPrefix(caddyAddr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: localhost\r\nCookie: %s\r\nX-Request-Name: stalled\r\n"+
		"Content-Length: 1000\r\n\r\n%s", cookie, strings.Repeat("x", 500))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("stalled POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Queue-Result") != "rejected_timeout" {
		t.Errorf("stalled POST: status %d, result %q; want 503 rejected_timeout", resp.StatusCode, resp.Header.Get("X-Queue-Result"))
	}
	g.let("holder")
	wait(t, holder)
}
