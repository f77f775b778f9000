package integration_test

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// browserSession plays a browser tab of a logged-in user: it logs in, then
// sends requests in bursts of burst at a time that share one cookie jar, so
// each request carries whatever session cookie the jar held when it left,
// and every regenerateEvery-th request regenerates the session ID. It
// returns how many replies saw a logged-out session and who the last
// request says is logged in.
func browserSession(t *testing.T, requests, burst, regenerateEvery int) (anonymous int, finally string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: client.Timeout}
	fetchBody := func(path string) (string, error) {
		resp, err := browser.Get(caddyAddr + path)
		if err != nil {
			return "", err
		}
		body := strings.TrimSpace(readBody(resp))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
		return body, nil
	}
	if who, err := fetchBody("/login.php?user=alice"); err != nil || who == "anonymous" {
		t.Fatalf("login: %q, %v", who, err)
	}
	site, _ := url.Parse(caddyAddr)
	if len(jar.Cookies(site)) == 0 {
		t.Fatal("login set no cookie")
	}

	var mu sync.Mutex
	for sent := 0; sent < requests; sent += burst {
		var wg sync.WaitGroup
		for i := sent; i < sent+burst && i < requests; i++ {
			path := "/whoami.php"
			if (i+1)%regenerateEvery == 0 {
				path = "/regen.php"
			}
			wg.Go(func() {
				who, err := fetchBody(path)
				if err != nil {
					t.Error(err)
					return
				}
				if who == "anonymous" {
					mu.Lock()
					anonymous++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	finally, err = fetchBody("/whoami.php")
	if err != nil {
		t.Fatal(err)
	}
	return anonymous, finally
}

// TestPHPRegenerationKeepsUsersLoggedIn: session_regenerate_id(true) while
// other requests of the page are in flight logs the user out through plain
// Caddy; session_queue follows the new ID and forwards the requests that
// still carry the old one.
func TestPHPRegenerationKeepsUsersLoggedIn(t *testing.T) {
	b := startPHP(t)
	for _, pool := range []struct{ name, socket string }{{"redis", b.redisPool}, {"files", b.filesPool}} {
		t.Run(pool.name, func(t *testing.T) {
			loadCaddyfile(t, b.site(t, pool.socket, ""))
			anonymous, finally := browserSession(t, 40, 10, 5)
			t.Logf("plain Caddy, %s: %d of 40 replies logged out, finally %q", pool.name, anonymous, finally)
			if anonymous == 0 {
				t.Fatalf("plain Caddy, %s: nobody was logged out, so this test proves nothing", pool.name)
			}

			loadCaddyfile(t, b.site(t, pool.socket, "session_queue {\n\tzone regen-"+pool.name+"\n}"))
			anonymous, finally = browserSession(t, 40, 10, 5)
			t.Logf("session_queue, %s: %d of 40 replies logged out, finally %q", pool.name, anonymous, finally)
			if anonymous != 0 || finally != "alice" {
				t.Errorf("session_queue, %s: %d replies logged out, finally %q; want 0 and alice", pool.name, anonymous, finally)
			}
		})
	}
}
