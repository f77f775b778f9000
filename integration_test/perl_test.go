package integration_test

import "testing"

// TestPerlLostUpdates: CGI::Session's file driver locks the session file
// only while reading or writing it, so concurrent requests of one session
// read the same data and the last flush wins. session_queue must make every
// increment count.
func TestPerlLostUpdates(t *testing.T) {
	sock := startPerl(t)

	loadCaddyfile(t, perlSite(sock, ""))
	_, plain := incrementRace(t, "/start.pl", "/incr.pl", "/read.pl", "CGISESSID", lostUpdateRequests)
	t.Logf("plain Caddy: counter %d after %d concurrent increments", plain, lostUpdateRequests)
	if plain >= lostUpdateRequests {
		t.Fatalf("plain Caddy: counter %d, want < %d: the backend did not lose updates, so this test proves nothing", plain, lostUpdateRequests)
	}

	loadCaddyfile(t, perlSite(sock, "session_queue"))
	replies, queued := incrementRace(t, "/start.pl", "/incr.pl", "/read.pl", "CGISESSID", lostUpdateRequests)
	t.Logf("session_queue: counter %d after %d concurrent increments", queued, lostUpdateRequests)
	checkSerialIncrements(t, replies, lostUpdateRequests)
	if queued != lostUpdateRequests {
		t.Errorf("session_queue: counter %d, want %d", queued, lostUpdateRequests)
	}
}
