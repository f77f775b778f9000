package integration_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// browserSession plays a browser tab of a logged-in user: it logs in, then
// sends requests in bursts of burst at a time that share one cookie jar, so
// each request carries whatever session cookie the jar held when it left,
// and every regenerateEvery-th request regenerates the session ID. It
// talks to the site at base through transport, with HTTP protocol version
// proto (1 or 2). It returns how many replies saw a logged-out session, who
// the last request says is logged in, and the cookies the browser holds.
func browserSession(t *testing.T, base string, transport http.RoundTripper, proto, requests, burst, regenerateEvery int) (anonymous int, finally string, cookies []*http.Cookie) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: client.Timeout, Transport: transport}
	fetchBody := func(path string) (string, error) {
		resp, err := browser.Get(base + path)
		if err != nil {
			return "", err
		}
		body := strings.TrimSpace(readBody(resp))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
		if resp.ProtoMajor != proto {
			return "", fmt.Errorf("GET %s: answered over %s, want HTTP/%d", path, resp.Proto, proto)
		}
		return body, nil
	}
	if who, err := fetchBody("/login.php?user=alice"); err != nil || who == "anonymous" {
		t.Fatalf("login: %q, %v", who, err)
	}
	site, _ := url.Parse(base)
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
	return anonymous, finally, jar.Cookies(site)
}

// TestPHPRegenerationKeepsUsersLoggedIn: session_regenerate_id(true) while
// other requests of the page are in flight logs the user out through plain
// Caddy; session_queue follows the new ID and forwards the requests that
// still carry the old one, as they come from the browser that holds the
// binding cookie: sq_binding over HTTP, __Host-sq_binding over HTTPS (with
// HTTP/1.1 and HTTP/2).
func TestPHPRegenerationKeepsUsersLoggedIn(t *testing.T) {
	b := startPHP(t)
	insecure := &tls.Config{InsecureSkipVerify: true}
	h1 := &http.Transport{TLSClientConfig: insecure, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	h2 := &http.Transport{TLSClientConfig: insecure, ForceAttemptHTTP2: true}
	defer h1.CloseIdleConnections()
	defer h2.CloseIdleConnections()
	for _, tt := range []struct {
		name, pool, base string
		transport        http.RoundTripper
		proto            int
		binding          string
	}{
		{"redis", b.redisPool, caddyAddr, http.DefaultTransport, 1, "sq_binding"},
		{"files", b.filesPool, caddyAddr, http.DefaultTransport, 1, "sq_binding"},
		{"https h1", b.redisPool, caddyTLSAddr, recording(h1), 1, "__Host-sq_binding"},
		{"https h2", b.redisPool, caddyTLSAddr, recording(h2), 2, "__Host-sq_binding"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			load := func(sessionQueue string) {
				site := b.site(t, tt.pool, sessionQueue)
				if tt.base == caddyTLSAddr {
					site = tlsSite(t, site)
				}
				loadCaddyfile(t, site)
			}
			load("")
			anonymous, finally, _ := browserSession(t, tt.base, tt.transport, tt.proto, 40, 10, 5)
			t.Logf("plain Caddy, %s: %d of 40 replies logged out, finally %q", tt.name, anonymous, finally)
			if anonymous == 0 {
				t.Fatalf("plain Caddy, %s: nobody was logged out, so this test proves nothing", tt.name)
			}

			load("session_queue {\n\tzone regen-" + strings.ReplaceAll(tt.name, " ", "-") + "\n}")
			anonymous, finally, cookies := browserSession(t, tt.base, tt.transport, tt.proto, 40, 10, 5)
			t.Logf("session_queue, %s: %d of 40 replies logged out, finally %q", tt.name, anonymous, finally)
			if anonymous != 0 || finally != "alice" {
				t.Errorf("session_queue, %s: %d replies logged out, finally %q; want 0 and alice", tt.name, anonymous, finally)
			}
			var names []string
			for _, c := range cookies {
				names = append(names, c.Name)
			}
			if want := []string{"PHPSESSID", tt.binding}; !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
				t.Errorf("session_queue, %s: the browser holds cookies %q, want %q", tt.name, names, want)
			}
		})
	}
}
