package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// benchmarkServeHTTP measures what the handler h adds to one request
// whose session is idle, with a next handler that does nothing but set
// the response's Set-Cookie header to setCookie, if given.
func benchmarkServeHTTP(b *testing.B, h *Handler, cookie, setCookie string) {
	h.Zone = "bench"
	if _, err := provisionIn(b, h); err != nil {
		b.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		if setCookie != "" {
			w.Header()["Set-Cookie"] = []string{setCookie}
			w.WriteHeader(http.StatusOK)
		}
		return nil
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	reset := withReplacer(req)
	// The handler takes the binding cookie out of the header.
	cookies := req.Header["Cookie"]
	w := headerWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, req, next); err != nil {
			b.Fatal(err)
		}
		clear(w.header)
		reset()
		if cookie != "" {
			cookies[0] = cookie
			req.Header["Cookie"] = cookies
		}
	}
}

// withReplacer gives req a Replacer as Caddy's server makes one for every
// request (with the http.* placeholders), and returns a function that puts
// it back in that state, so that req can be served again and again as a
// new request without the cost of a new Replacer. The values set on it
// stay, which spares the handlers that set them growing its map.
func withReplacer(req *http.Request) (reset func()) {
	repl := caddyhttp.NewTestReplacer(req)
	fresh := *repl
	return func() { *repl = fresh }
}

// headerWriter is a ResponseWriter that keeps only the header, which the
// benchmark clears after each request so that it does not pile up.
type headerWriter struct{ header http.Header }

func (w headerWriter) Header() http.Header       { return w.header }
func (headerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (headerWriter) WriteHeader(int)             {}

func BenchmarkServeHTTPQueued(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5", "")
}

// BenchmarkServeHTTPQueuedBrowser: a browser's request, which carries the
// binding cookie given to it by an earlier response.
func BenchmarkServeHTTPQueuedBrowser(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; sq_binding=Jx0hC3oQ7nLwR2yTb5kZ9A", "")
}

// BenchmarkServeHTTPQueuedSetCookie: the response sets the session cookie
// again, with the same ID, as PHP does when session.cookie_lifetime is set.
func BenchmarkServeHTTPQueuedSetCookie(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5",
		"PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; expires=Mon, 30-Nov-2099 11:49:48 GMT; Max-Age=7200; path=/; HttpOnly; SameSite=Lax")
}

// laravelBenchmark is a Laravel site's request: its encrypted session
// cookie (and XSRF-TOKEN beside it) decrypted on every request; with
// setsCookie, the response re-encrypts the session cookie, as Laravel's
// do, and it is decrypted too.
func laravelBenchmark(b *testing.B, setsCookie bool) {
	laravel, err := idgen.NewLaravel([]string{testAppKey})
	if err != nil {
		b.Fatal(err)
	}
	const id = "v9l4b0r2k1mv3qf8tmd6s7j2a5v9l4b0r2k1mv3q"
	value, _ := laravel.Encrypt("laravel_session", id)
	xsrf, _ := laravel.Encrypt("XSRF-TOKEN", "x9l4b0r2k1mv3qf8tmd6s7j2a5v9l4b0r2k1mv3q")
	setCookie := ""
	if setsCookie {
		again, _ := laravel.Encrypt("laravel_session", id)
		setCookie = "laravel_session=" + url.QueryEscape(again) + "; expires=Mon, 30-Nov-2099 11:49:48 GMT; Max-Age=7200; path=/; httponly; samesite=lax"
	}
	h := &Handler{Cookies: []string{"laravel_session"}, DecryptRaw: decryptConfig(testAppKey)}
	benchmarkServeHTTP(b, h, "XSRF-TOKEN="+url.QueryEscape(xsrf)+"; laravel_session="+url.QueryEscape(value), setCookie)
}

func BenchmarkServeHTTPQueuedLaravel(b *testing.B) { laravelBenchmark(b, false) }

func BenchmarkServeHTTPQueuedLaravelSetCookie(b *testing.B) { laravelBenchmark(b, true) }

func BenchmarkServeHTTPWithoutSession(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3", "")
}

// BenchmarkServeHTTPQueuedParallel runs queued requests of different idle
// sessions on every CPU at once (with regeneration links in the zone, as
// after logins): run with -cpu 1,2,... to see what the CPUs share.
func BenchmarkServeHTTPQueuedParallel(b *testing.B) {
	h := &Handler{Zone: "bench-parallel"}
	if _, err := provisionIn(b, h); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		h.zone.lineages.Link(fmt.Sprintf("old%d", i), fmt.Sprintf("new%d", i), "", time.Now())
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	var sessions atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		session := sessions.Add(1)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Cookie", fmt.Sprintf("_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s%d", session))
		// Each CPU's requests come over a connection of its own.
		req.RemoteAddr = fmt.Sprintf("192.0.2.1:%d", 40000+session)
		reset := withReplacer(req)
		w := httptest.NewRecorder()
		for pb.Next() {
			reset()
			if err := h.ServeHTTP(w, req, next); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestQueuedRequestAllocations holds the handler to its budget: a request
// whose session is idle costs at most 4 allocations, with or without a
// binding cookie, and the session's
// hash is not computed unless a placeholder or log line reads it.
func TestQueuedRequestAllocations(t *testing.T) {
	h := &Handler{Zone: "allocs"}
	if _, err := provisionIn(t, h); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5")
	reset := withReplacer(req)
	w := httptest.NewRecorder()
	allocs := testing.AllocsPerRun(200, func() {
		reset()
		if err := h.ServeHTTP(w, req, next); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per queued request", allocs)
	if allocs > 4 {
		t.Errorf("%.0f allocations per queued request, want at most 4", allocs)
	}

	// A browser's request carries its binding cookie too, which the
	// handler reads and takes out of the header.
	const cookie = "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; sq_binding=Jx0hC3oQ7nLwR2yTb5kZ9A"
	browser := httptest.NewRequest(http.MethodGet, "/", nil)
	cookies := []string{cookie}
	resetBrowser := withReplacer(browser)
	allocs = testing.AllocsPerRun(200, func() {
		resetBrowser()
		cookies[0] = cookie
		browser.Header["Cookie"] = cookies
		if err := h.ServeHTTP(w, browser, next); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("%.0f allocations per queued request with a binding cookie", allocs)
	if allocs > 4 {
		t.Errorf("%.0f allocations per queued request with a binding cookie, want at most 4", allocs)
	}

	repl := req.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	v, _ := repl.Get(placeholderSession)
	name, ok := v.(*sessionName)
	if !ok {
		t.Fatalf("the session placeholder holds a %T", v)
	}
	if name.name != "" {
		t.Error("the session's hash was computed though nothing read it")
	}
	if got, want := caddy.ToString(v), idgen.Hash("v9l4b0r2k1mv3qf8tmd6s7j2a5"); got != want {
		t.Errorf("the session placeholder reads %q, want %q", got, want)
	}
}
