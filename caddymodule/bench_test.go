package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// benchmarkServeHTTP measures what the handler adds to one request whose
// session is idle, with a next handler that does nothing.
func benchmarkServeHTTP(b *testing.B, cookie string) {
	h := &Handler{Zone: "bench"}
	if _, err := provisionIn(b, h); err != nil {
		b.Fatal(err)
	}
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
	benchmarkServeHTTP(b, "_ga=GA1.2.3; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5")
}

func BenchmarkServeHTTPWithoutSession(b *testing.B) {
	benchmarkServeHTTP(b, "_ga=GA1.2.3")
}
