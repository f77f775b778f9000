package integration_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// zoneCheckSite has a read-only path, to see how many readers of a session
// the zone admits.
func zoneCheckSite(backend, options string) string {
	return queuedSite(backend, "zone settled\n\t\tread_only path /read\n\t\t"+options)
}

// TestFailedLoadLeavesZoneAsItWas posts to the admin API's /load a config
// that asks zone "settled" for other limits and another key_pattern, and
// that cannot start (a port it listens on is taken). The running zone keeps
// its limits and its keying, as the admin API and the queue's behaviour
// show.
func TestFailedLoadLeavesZoneAsItWas(t *testing.T) {
	g := newGateBackend(t)
	loadCaddyfile(t, zoneCheckSite(g.URL, "max_readers 1\n\t\tmax_waiting 5"))

	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	failing, err := adaptCaddyfile(t, "1ns",
		zoneCheckSite(g.URL, "max_readers 50\n\t\tmax_waiting 40\n\t\tkey_pattern ^([a-z]+)-")+
			fmt.Sprintf(":%d {\n\trespond ok\n}\n", port))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := freshClient().Post(adminURL+"/load", "application/json", bytes.NewReader(failing))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(resp); resp.StatusCode == http.StatusOK {
		t.Fatal("the config listening on a taken port loaded")
	} else {
		t.Logf("/load refused the config: %d %s", resp.StatusCode, strings.TrimSpace(body))
	}

	if z, _ := zoneStatus(t, "settled"); z.MaxReaders != 1 || z.MaxWaiting != 5 {
		t.Errorf("after the failed load the zone has max_readers %d, max_waiting %d; want 1, 5", z.MaxReaders, z.MaxWaiting)
	}

	// No key_pattern: two sessions whose IDs share a prefix are not keyed
	// alike.
	alpha := send(t.Context(), "/", "PHPSESSID=settled-alpha-session", "alpha")
	g.expectArrival(t, "alpha")
	beta := send(t.Context(), "/", "PHPSESSID=settled-beta-session", "beta")
	expectPassesBy(t, g, "settled", "beta")
	g.let("alpha")
	g.let("beta")
	wait(t, alpha)
	wait(t, beta)

	// max_readers 1: a second reader of a session waits for the first.
	const readerCookie = "PHPSESSID=settled-reader-session"
	first := send(t.Context(), "/read", readerCookie, "first reader")
	g.expectArrival(t, "first reader")
	second := send(t.Context(), "/read", readerCookie, "second reader")
	awaitQueued(t, g, "settled", 1)
	g.let("first reader")
	g.expectArrival(t, "second reader")
	g.let("second reader")
	wait(t, first)
	wait(t, second)
}

// TestHandlersOfOneZoneMustAgree: two handlers of one zone in one config
// that set different limits are a config error naming both values.
func TestHandlersOfOneZoneMustAgree(t *testing.T) {
	err := loadError(t, `:9080 {
	handle /a {
		session_queue {
			zone shared
			max_readers 2
		}
		respond a
	}
	handle {
		session_queue {
			zone shared
		}
		respond b
	}
}
`)
	const want = `zone "shared": max_readers `
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "in another session_queue handler of this config") {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	t.Log(err)
}

// TestKeyPatternReloadKeepsOneWriter reloads, in place, with a new
// key_pattern while a writer of a session holds its turn under the old
// one: a request of the same session arriving through the new config is
// keyed differently, and must still wait.
func TestKeyPatternReloadKeepsOneWriter(t *testing.T) {
	g := newGateBackend(t)
	const id = "nodea-1-keyreloadsession"
	const cookie = "PHPSESSID=" + id
	loadCaddyfileGrace(t, "1m", queuedSite(g.URL, "zone keyreload"))
	holder := send(t.Context(), "/", cookie, "holder")
	g.expectArrival(t, "holder")

	cfg, err := adaptCaddyfile(t, "1m", queuedSite(g.URL, "zone keyreload\n\t\tkey_pattern ^[^-]*-[^-]*-(.+)$"))
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- reloadConfig(cfg) }()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reload never returned")
	}

	second := sendQueuedAcrossHandover(t, g, "keyreload", cookie, "second")
	g.let("holder")
	g.expectArrival(t, "second")
	g.let("second")
	for _, ch := range []<-chan result{holder, second} {
		if r := wait(t, ch); r.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r.name, r.status)
		}
	}
	if got := g.maxConcurrent(id); got != 1 {
		t.Fatalf("%d writers of the session ran together across the key_pattern change, want 1", got)
	}
}

// sendQueuedAcrossHandover sends a request right after an in-place reload
// and returns once it waits in zone, failing at once if it reaches the
// backend instead. A request failed by the listener's handover (see
// loadCaddyfileGrace) never reached the handler, and is sent again.
func sendQueuedAcrossHandover(t *testing.T, g *gateBackend, zone, cookie, name string) <-chan result {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		ch := send(t.Context(), "/", cookie, name)
		deadline := time.Now().Add(30 * time.Second)
		for zoneWaiting(t, zone) != 1 {
			select {
			case got := <-g.arrived:
				t.Fatalf("%s reached the backend while another writer of its session was inside", got)
			case r := <-ch:
				if r.err == nil {
					t.Fatalf("%s answered %d instead of queueing", name, r.status)
				}
				t.Logf("%s failed during the handover, sending again: %v", name, r.err)
				ch = nil
			default:
			}
			if ch == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never queued", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if ch != nil {
			return ch
		}
	}
	t.Fatalf("%s failed five times", name)
	return nil
}

// TestSessionNamedAlikeEverywhere: the {http.session_queue.session}
// placeholder names a session as the admin API does, for an ID keyed by a
// key_pattern and for an ID that a regeneration linked to the session.
func TestSessionNamedAlikeEverywhere(t *testing.T) {
	g := newGateBackend(t)
	const oldID, newID = "nodea-1-namedsession", "nodeb-2-regeneratedsession"
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/regenerate" {
			http.SetCookie(w, &http.Cookie{Name: "PHPSESSID", Value: newID, Path: "/"})
			return
		}
		g.Config.Handler.ServeHTTP(w, r)
	}))
	defer backend.Close()
	loadCaddyfile(t, queuedSite(backend.URL, "zone named\n\t\tkey_pattern ^[^-]*-[^-]*-(.+)$"))

	for _, tc := range []struct{ what, id string }{
		{"an ID keyed by key_pattern", oldID},
		{"a regenerated ID", newID},
	} {
		if tc.id == newID {
			r := wait(t, send(t.Context(), "/regenerate", "PHPSESSID="+oldID, "regenerate"))
			if r.status != http.StatusOK {
				t.Fatalf("regenerating: status %d", r.status)
			}
		}
		held := send(t.Context(), "/", "PHPSESSID="+tc.id, tc.what)
		g.expectArrival(t, tc.what)
		var listed struct {
			Sessions []adminSession `json:"sessions"`
		}
		adminGet(t, "/session_queue/zones/named/sessions", &listed)
		if len(listed.Sessions) != 1 {
			t.Fatalf("%s: the admin API lists %d sessions, want 1: %+v", tc.what, len(listed.Sessions), listed.Sessions)
		}
		g.let(tc.what)
		r := wait(t, held)
		if got, want := r.header.Get("X-Queue-Session"), listed.Sessions[0].Session; got != want {
			t.Errorf("%s: the placeholder names the session %q, the admin API %q", tc.what, got, want)
		}
	}
}
