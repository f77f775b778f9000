package integration_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestPHPCookieSpellingsShareOneQueue: PHP percent-decodes cookie values,
// so PHPSESSID=abc%641234 is the session abcd1234. A client that spells its
// session ID both ways must still be serialized: queued apart, the two
// spellings overlap in the backend and lose updates, as through plain
// Caddy.
func TestPHPCookieSpellingsShareOneQueue(t *testing.T) {
	b := startPHP(t)
	race := func() ([]reply, int) {
		cookie := startSession(t, "/start.php", "PHPSESSID")
		id := strings.TrimPrefix(cookie, "PHPSESSID=")
		spellings := []string{cookie, "PHPSESSID=" + percentEncodeFirst(id)}
		replies := make([]reply, lostUpdateRequests)
		var wg sync.WaitGroup
		for i := range replies {
			wg.Go(func() { replies[i] = fetch(t, "/incr.php", spellings[i%len(spellings)]) })
		}
		wg.Wait()
		return replies, readCounter(t, "/read.php", cookie)
	}

	loadCaddyfile(t, b.site(t, b.redisPool, ""))
	_, plain := race()
	t.Logf("plain Caddy: counter %d after %d concurrent increments in two spellings", plain, lostUpdateRequests)
	if plain >= lostUpdateRequests {
		t.Fatalf("plain Caddy: counter %d, want < %d: no update was lost, so this test proves nothing", plain, lostUpdateRequests)
	}

	loadCaddyfile(t, b.site(t, b.redisPool, "session_queue"))
	replies, queued := race()
	t.Logf("session_queue: counter %d after %d concurrent increments in two spellings", queued, lostUpdateRequests)
	checkSerialIncrements(t, replies, lostUpdateRequests)
	if queued != lostUpdateRequests {
		t.Errorf("session_queue: counter %d, want %d", queued, lostUpdateRequests)
	}
}

// percentEncodeFirst writes the first byte of id as %XX, which PHP decodes
// back.
func percentEncodeFirst(id string) string {
	return fmt.Sprintf("%%%02x%s", id[0], id[1:])
}
