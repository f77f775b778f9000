package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// panickingObserver stands for any fault between the grant of a turn and
// the rest of the route: it is the first thing ServeHTTP touches after
// Acquire returns.
type panickingObserver struct{}

func (panickingObserver) Observe(float64) { panic("observer fault") }

// TestPanicFreesTurn: a request that panics while it holds its session's
// turn, before or inside the rest of the route, gives the turn back.
func TestPanicFreesTurn(t *testing.T) {
	const id = "panic-session-0123456789"
	tests := []struct {
		name  string
		fault func(h *Handler)
		next  caddyhttp.HandlerFunc
	}{
		{
			name:  "right after the grant",
			fault: func(h *Handler) { h.zone.metrics.wait[modeWriter] = panickingObserver{} },
			next:  func(http.ResponseWriter, *http.Request) error { return nil },
		},
		{
			name:  "in the next handler",
			fault: func(*Handler) {},
			next:  func(http.ResponseWriter, *http.Request) error { panic(http.ErrAbortHandler) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Zone: "panic-" + tt.name}
			if err := provision(t, h); err != nil {
				t.Fatal(err)
			}
			tt.fault(h)
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Cookie", "PHPSESSID="+id)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("ServeHTTP did not panic")
					}
				}()
				_ = h.ServeHTTP(httptest.NewRecorder(), r, tt.next)
			}()
			if h.zone.table.Busy(h.zone.queueKey(id)) {
				t.Fatal("the session's turn is still held after the panic")
			}
		})
	}
}
