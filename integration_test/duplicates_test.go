package integration_test

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientFrom returns a client whose connections come from the loopback
// address ip, so that Caddy sees a client of that address.
func clientFrom(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 60 * time.Second, Transport: recording(&http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true})}
}

// startReply is the answer to /start.pl: its status and the CGISESSID it
// set, if any.
type startReply struct {
	status int
	id     string
	body   string
}

func startFrom(t *testing.T, c *http.Client) startReply {
	resp, err := c.Get(caddyAddr + "/start.pl")
	if err != nil {
		t.Errorf("GET /start.pl: %v", err)
		return startReply{}
	}
	r := startReply{status: resp.StatusCode, body: readBody(resp)}
	for _, cookie := range resp.Cookies() {
		if cookie.Name == "CGISESSID" {
			r.id = cookie.Value
		}
	}
	return r
}

// weakIDsCollide starts a fresh weak-ID Perl app behind sessionQueue, lets
// client A start a session, then client B start four at once: each worker
// draws the same IDs in the same order, so the workers that have not served
// A hand B the ID A has. It returns A's ID and B's replies.
func weakIDsCollide(t *testing.T, sessionQueue string) (string, []startReply) {
	t.Helper()
	sock := startPerl(t, "weak-ids")
	loadCaddyfile(t, perlSite(sock, sessionQueue))
	a := startFrom(t, clientFrom("127.0.0.2"))
	if a.status != http.StatusOK || a.id == "" {
		t.Fatalf("client A: %+v", a)
	}
	b := clientFrom("127.0.0.3")
	replies := make([]startReply, fpmWorkers)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() { replies[i] = startFrom(t, b) })
	}
	wg.Wait()
	return a.id, replies
}

// zoneDuplicates reads the duplicates counter of zone from the admin API.
func zoneDuplicates(t *testing.T, zone string) uint64 {
	t.Helper()
	z, ok := zoneStatus(t, zone)
	if !ok {
		t.Fatalf("admin API: no zone %s", zone)
	}
	return z.Duplicates
}

// TestPerlDuplicateIDs: a FastCGI app whose workers share a seeded random
// state hands two clients the same CGISESSID. Through plain Caddy the
// second client silently joins the first one's session; session_queue
// spots it, and with on_duplicate reject the second client gets 502 instead
// of the other user's session.
func TestPerlDuplicateIDs(t *testing.T) {
	aID, plain := weakIDsCollide(t, "")
	shared := 0
	for _, r := range plain {
		if r.id == aID {
			shared++
		}
	}
	t.Logf("plain Caddy: %d of client B's %d new sessions had client A's ID", shared, len(plain))
	if shared == 0 {
		t.Fatalf("plain Caddy: no collision (%+v), so this test proves nothing", plain)
	}

	aID, logged := weakIDsCollide(t, "session_queue {\n\tzone dup-log\n}")
	if n := zoneDuplicates(t, "dup-log"); n == 0 {
		t.Errorf("on_duplicate log: no duplicate counted; A %s, B %+v", aID[:4], logged)
	}
	for _, r := range logged {
		if r.status != http.StatusOK {
			t.Errorf("on_duplicate log: B got %d; logging must not change the reply", r.status)
		}
	}

	// The error route echoes the error's message, as a site's error page
	// may: it must not tell client B where client A is.
	aID, rejected := weakIDsCollide(t, "session_queue {\n\tzone dup-reject\n\ton_duplicate reject\n}\n"+
		"handle_errors {\n\trespond \"{err.message}\" {err.status_code}\n}")
	withheld := 0
	for _, r := range rejected {
		switch {
		case r.id == aID:
			t.Errorf("on_duplicate reject: client B received client A's session (status %d)", r.status)
		case r.status == http.StatusBadGateway:
			withheld++
			if r.id != "" {
				t.Errorf("on_duplicate reject: the 502 set a session cookie")
			}
			if strings.Contains(r.body, "127.0.0.2") {
				t.Errorf("on_duplicate reject: the 502's error message gives client B client A's address: %q", r.body)
			}
		case r.status != http.StatusOK || r.id == "":
			t.Errorf("on_duplicate reject: B got %+v", r)
		}
	}
	n := zoneDuplicates(t, "dup-reject")
	t.Logf("on_duplicate reject: %d of B's replies withheld with 502, %d duplicates counted", withheld, n)
	if withheld == 0 || n < uint64(withheld) {
		t.Errorf("on_duplicate reject: %d withheld, %d counted; want at least one, all counted", withheld, n)
	}
}
