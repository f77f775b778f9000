package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

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
	repl := caddy.NewReplacer()
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	w := headerWriter{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, req, next); err != nil {
			b.Fatal(err)
		}
		clear(w.header)
	}
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
