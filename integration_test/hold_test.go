package integration_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClientLeavingMidResponseKeepsTurn: a client that drops its connection
// while its response streams in must not free its session's turn while the
// backend still works on the request. Plain Caddy (and session_queue before
// the fix) gives up the upstream response at the first write the client no
// longer takes, and the next request of the session overlaps the rest of
// the first one's work: one increment is lost.
func TestClientLeavingMidResponseKeepsTurn(t *testing.T) {
	b := startPHP(t)

	loadCaddyfile(t, b.site(t, b.redisPool, ""))
	events, counter := leaveMidResponse(t, b, "plain", "")
	t.Logf("plain Caddy: events %q, counter %d after two increments", events, counter)
	if !slices.Equal(events, []string{"incr started", "stream saved"}) || counter != 1 {
		t.Fatalf("plain Caddy: events %q, counter %d; want the increment in before the stream saved and an update lost: this test proves nothing", events, counter)
	}

	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone midresponse\n}"))
	events, counter = leaveMidResponse(t, b, "queued", "midresponse")
	t.Logf("session_queue: events %q, counter %d after two increments", events, counter)
	if !slices.Equal(events, []string{"stream saved", "incr started"}) {
		t.Errorf("session_queue: events %q; the next request of the session started before the one whose client left had saved", events)
	}
	if counter != 2 {
		t.Errorf("session_queue: counter %d, want 2", counter)
	}
}

// leaveMidResponse starts a session and opens testdata/php/stream.php on a
// raw connection. Once its first line is in, it sends an increment of the
// same session: through zone it must queue, through plain Caddy (zone "")
// it runs at once and its reply is awaited. Then the client of stream.php
// resets its connection, and stream.php is let go on. It returns the
// session's event log and its final counter.
func leaveMidResponse(t *testing.T, b *phpBackend, name, zone string) ([]string, int) {
	t.Helper()
	cookie := startSession(t, "/start.php", "PHPSESSID")
	conn := openStream(t, "/stream.php?f="+name+"&e="+name, cookie)
	incr := fetchAsync(t, 1, "/incr.php?e="+name, cookie)
	if zone == "" {
		expectStatus(t, "plain Caddy: increment", <-incr, http.StatusOK)
	} else {
		awaitWaiting(t, zone, 1)
	}
	// With linger 0, Close resets the connection: Caddy's next write to it
	// fails at once instead of after a round trip.
	if err := conn.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	b.release(t, name)
	if zone != "" {
		expectStatus(t, "session_queue: increment", <-incr, http.StatusOK)
	}
	events := awaitEvents(t, b, name, 2)
	return events, readCounter(t, "/read.php", cookie)
}

// openStream sends a GET on a connection of its own and returns it once
// the response's first body line, "started", has arrived.
func openStream(t *testing.T, path, cookie string) *net.TCPConn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(caddyAddr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nCookie: %s\r\n\r\n", path, cookie)
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		t.Fatalf("GET %s: status line %q, %v", path, status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("GET %s: no \"started\" line: %v", path, err)
		}
		if line == "started\n" {
			return conn.(*net.TCPConn)
		}
	}
}

// awaitEvents waits until the event log events-NAME that testdata/php's
// sq_event writes has n lines, and returns them.
func awaitEvents(t *testing.T, b *phpBackend, name string, n int) []string {
	t.Helper()
	var lines []string
	eventually(t, fmt.Sprintf("%d events in %s", n, name), func() bool {
		data, err := os.ReadFile(filepath.Join(b.stateDir, "events-"+name))
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		return err == nil && len(lines) >= n
	})
	return lines
}
