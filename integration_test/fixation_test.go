package integration_test

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// served is what testdata/php/session.php answered: the session's user and
// the ID of the session the backend served.
type served struct {
	user, id string
	err      error
}

func fetchSession(c *http.Client, cookie string) served {
	req, err := http.NewRequest(http.MethodGet, caddyAddr+"/session.php", nil)
	if err != nil {
		return served{err: err}
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return served{err: err}
	}
	body := strings.TrimSpace(readBody(resp))
	if resp.StatusCode != http.StatusOK {
		return served{err: fmt.Errorf("session.php: %d %q", resp.StatusCode, body)}
	}
	user, id, ok := strings.Cut(body, " ")
	if !ok {
		return served{err: fmt.Errorf("session.php: unexpected reply %q", body)}
	}
	return served{user: user, id: id}
}

// postLoginRequests is how many of the attacker's requests must have been
// sent after the victim's login returned before the attack stops: with one
// every 20 ms, half a second, well within regenerate_grace (2s).
const postLoginRequests = 25

// fixationAttack plays a session fixation against the site on caddyAddr.
// The attacker gets a session ID X from the backend, plants it in the
// victim's browser (a cookie jar given X), and polls with X every 20 ms
// while the victim browses and logs in, which makes the backend regenerate
// X into Y (session_regenerate_id(true)); the login takes 200 ms, so that
// some of the attacker's requests wait behind it. Every request carries the
// headers of its side. It returns how many of the attacker's requests the
// backend served with another session than X (that is with Y, whose user
// is the victim), and how many it sent.
func fixationAttack(t *testing.T, victimHeader, attackerHeader http.Header) (hijacked, sent int) {
	t.Helper()
	attacker := &http.Client{Timeout: client.Timeout, Transport: headerTransport{attackerHeader, client.Transport}}
	// The attacker's own first visit gets X, and whatever else the proxy
	// gives a browser: it presents all of it with X.
	resp, err := attacker.Get(caddyAddr + "/session.php")
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	var attackerCookies []string
	fixed := ""
	for _, c := range resp.Cookies() {
		attackerCookies = append(attackerCookies, c.Name+"="+c.Value)
		if c.Name == "PHPSESSID" {
			fixed = c.Value
		}
	}
	if fixed == "" {
		t.Fatalf("the backend issued no PHPSESSID: %v", resp.Header)
	}
	attackerCookie := strings.Join(attackerCookies, "; ")

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	site, _ := url.Parse(caddyAddr)
	jar.SetCookies(site, []*http.Cookie{{Name: "PHPSESSID", Value: fixed, Path: "/"}})
	victim := &http.Client{Jar: jar, Timeout: client.Timeout, Transport: headerTransport{victimHeader, http.DefaultTransport}}

	type result struct {
		served
		afterLogin bool
	}
	results := make(chan result, 10_000)
	stop := make(chan struct{})
	var mu sync.Mutex
	loginReturned := false
	var inFlight sync.WaitGroup
	polling := make(chan struct{}) // closed once the attacker sends no more
	go func() {
		defer close(polling)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			after := loginReturned
			mu.Unlock()
			inFlight.Go(func() {
				results <- result{fetchSession(attacker, attackerCookie), after}
			})
		}
	}()

	// Collect replies until enough attacker requests sent after the login
	// have come back; the victim logs in once the attack is under way.
	var all []result
	afterLogin := 0
	collect := func(r result) {
		all = append(all, r)
		if r.afterLogin {
			afterLogin++
		}
	}
	for len(all) < 3 {
		collect(<-results)
	}
	// The victim browses with the planted ID, then logs in.
	if got := fetchSession(victim, ""); got.err != nil || got.id != fixed {
		t.Fatalf("victim's first page: %+v; want the planted session", got)
	}
	resp, err = victim.Get(caddyAddr + "/login.php?user=alice&ms=200")
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	mu.Lock()
	loginReturned = true
	mu.Unlock()
	for afterLogin < postLoginRequests {
		collect(<-results)
	}
	close(stop)
	<-polling
	inFlight.Wait()
	close(results)
	for r := range results {
		collect(r)
	}

	// The victim is logged in under a new ID.
	if got := fetchSession(victim, ""); got.err != nil || got.user != "alice" || got.id == fixed {
		t.Fatalf("victim after login: user %q, same ID as planted %v, err %v; want alice under a new ID", got.user, got.id == fixed, got.err)
	}
	// The binding cookie the victim holds stays in the proxy.
	resp, err = victim.Get(caddyAddr + "/cookies.php")
	if err != nil {
		t.Fatal(err)
	}
	if names := strings.TrimSpace(readBody(resp)); names != "PHPSESSID" {
		t.Errorf("the backend was sent the cookies %q, want PHPSESSID only", names)
	}
	for _, r := range all {
		if r.err != nil {
			t.Errorf("attacker's request: %v", r.err)
			continue
		}
		if r.id != fixed || r.user == "alice" {
			hijacked++
		}
	}
	return hijacked, len(all)
}

// TestPHPFixationNotForwarded: an attacker who planted a session ID in the
// victim's browser, and polls with it from the same address while the
// victim logs in, is never served with the session the login regenerated
// it into. The client address is no proof of who is who: here both come
// from 127.0.0.1, as behind one NAT, or forge X-Forwarded-For through a
// trusted proxy.
func TestPHPFixationNotForwarded(t *testing.T) {
	b := startPHP(t)
	site := b.site(t, b.redisPool, "session_queue {\n\tzone fixation\n}")

	t.Run("same address", func(t *testing.T) {
		loadCaddyfile(t, site)
		hijacked, sent := fixationAttack(t, nil, nil)
		t.Logf("%d of the attacker's %d requests were served with the victim's new session", hijacked, sent)
		if hijacked != 0 {
			t.Errorf("%d of the attacker's %d requests were served with the victim's new session; want 0", hijacked, sent)
		}
	})

	t.Run("forged X-Forwarded-For", func(t *testing.T) {
		loadCaddyfileOptions(t, "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}\n", site)
		// The victim is behind the proxy at 203.0.113.7; the attacker
		// claims that address too.
		xff := http.Header{"X-Forwarded-For": {"203.0.113.7"}}
		hijacked, sent := fixationAttack(t, xff, xff)
		t.Logf("%d of the attacker's %d requests were served with the victim's new session", hijacked, sent)
		if hijacked != 0 {
			t.Errorf("%d of the attacker's %d requests were served with the victim's new session; want 0", hijacked, sent)
		}
	})
}

// loginWithStaleRequest logs a browser in (its session ID X regenerated
// into Y), then sends, after the login has returned, one request with X
// and every other cookie of that browser, its binding among them, as a
// browser does that sent it before it stored Y. It returns what served
// that request, X, and the names of the cookies the browser holds.
func loginWithStaleRequest(t *testing.T) (stale served, old string, names []string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: client.Timeout}
	first := fetchSession(browser, "")
	if first.err != nil {
		t.Fatal(first.err)
	}
	site, _ := url.Parse(caddyAddr)
	before := jar.Cookies(site)
	resp, err := browser.Get(caddyAddr + "/login.php?user=alice")
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	var cookie []string
	for _, c := range before {
		cookie = append(cookie, c.Name+"="+c.Value)
	}
	for _, c := range jar.Cookies(site) {
		names = append(names, c.Name)
	}
	return fetchSession(client, strings.Join(cookie, "; ")), first.id, names
}

// TestPHPRegenerateGraceOff: with regenerate_grace 0 a request the browser
// sends with the old ID after the regeneration keeps it (it used to become
// the 2s default); with forward_regenerated off nothing is forwarded and no
// binding cookie is set. With a grace, the same request is forwarded.
func TestPHPRegenerateGraceOff(t *testing.T) {
	b := startPHP(t)
	for _, tt := range []struct {
		options   string
		forwarded bool
		cookies   string
	}{
		{"regenerate_grace 1m", true, "PHPSESSID sq_binding"},
		{"regenerate_grace 0", false, "PHPSESSID sq_binding"},
		{"regenerate_grace off", false, "PHPSESSID sq_binding"},
		{"forward_regenerated off", false, "PHPSESSID"},
	} {
		t.Run(tt.options, func(t *testing.T) {
			loadCaddyfile(t, b.site(t, b.redisPool, "session_queue {\n\tzone grace-off\n\t"+tt.options+"\n}"))
			stale, old, names := loginWithStaleRequest(t)
			if stale.err != nil {
				t.Fatal(stale.err)
			}
			forwarded := stale.id != old
			t.Logf("%s: the stale request was served as %q, forwarded %v; the browser holds %q", tt.options, stale.user, forwarded, names)
			if forwarded != tt.forwarded || (stale.user == "alice") != tt.forwarded {
				t.Errorf("%s: the stale request was served as %q, forwarded %v; want forwarded %v", tt.options, stale.user, forwarded, tt.forwarded)
			}
			if got := strings.Join(slices.Sorted(slices.Values(names)), " "); got != tt.cookies {
				t.Errorf("%s: the browser holds cookies %q, want %q", tt.options, got, tt.cookies)
			}
		})
	}
}
