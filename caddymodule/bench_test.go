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
// whose session is idle, with a next handler that does nothing.
func benchmarkServeHTTP(b *testing.B, h *Handler, cookie string) {
	h.Zone = "bench"
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer h.Cleanup()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	repl := caddy.NewReplacer()
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, req, next); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServeHTTPQueued(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5")
}

// BenchmarkServeHTTPQueuedLaravel is a Laravel site's request: its
// encrypted session cookie (and XSRF-TOKEN beside it) decrypted on every
// request.
func BenchmarkServeHTTPQueuedLaravel(b *testing.B) {
	laravel, err := idgen.NewLaravel([]string{testAppKey})
	if err != nil {
		b.Fatal(err)
	}
	value, _ := laravel.Encrypt("laravel_session", "v9l4b0r2k1mv3qf8tmd6s7j2a5v9l4b0r2k1mv3q")
	xsrf, _ := laravel.Encrypt("XSRF-TOKEN", "x9l4b0r2k1mv3qf8tmd6s7j2a5v9l4b0r2k1mv3q")
	h := &Handler{Cookies: []string{"laravel_session"}, DecryptRaw: decryptConfig(testAppKey)}
	benchmarkServeHTTP(b, h, "XSRF-TOKEN="+url.QueryEscape(xsrf)+"; laravel_session="+url.QueryEscape(value))
}

func BenchmarkServeHTTPWithoutSession(b *testing.B) {
	benchmarkServeHTTP(b, &Handler{}, "_ga=GA1.2.3")
}
