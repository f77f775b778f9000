package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sessionqueue/caddy-session-queue/queue"
)

// panickingCore stands for any fault between the grant of a turn and the
// rest of the route: a request granted its turn after waiting logs that
// (at debug level) before it goes on.
type panickingCore struct{ zapcore.Core }

func (panickingCore) Enabled(zapcore.Level) bool { return true }

func (c panickingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (panickingCore) Write(zapcore.Entry, []zapcore.Field) error { panic("logger fault") }

// TestPanicFreesTurn: a request that panics while it holds its session's
// turn, before or inside the rest of the route, gives the turn back.
func TestPanicFreesTurn(t *testing.T) {
	const id = "panic-session-0123456789"
	tests := []struct {
		name  string
		fault func(h *Handler)
		// queued: the request waits for its turn behind another.
		queued bool
		next   caddyhttp.HandlerFunc
	}{
		{
			name:   "right after the grant",
			fault:  func(h *Handler) { h.logger = zap.New(panickingCore{}) },
			queued: true,
			next:   func(http.ResponseWriter, *http.Request) error { return nil },
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
			var holder sessionTurn
			if tt.queued {
				var err error
				if holder, _, _, err = h.zone.acquire(t.Context(), &h.zone.stripes[0], id, queue.Write, time.Now(), 0, nil); err != nil {
					t.Fatal(err)
				}
			}
			panicked := make(chan bool)
			go func() {
				defer func() { panicked <- recover() != nil }()
				_ = h.ServeHTTP(httptest.NewRecorder(), r, tt.next)
			}()
			if tt.queued {
				for _, waiting := h.zone.table.Stats(); waiting == 0; _, waiting = h.zone.table.Stats() {
					runtime.Gosched()
				}
				holder.Release()
			}
			if !<-panicked {
				t.Fatal("ServeHTTP did not panic")
			}
			if h.zone.busy(id) {
				t.Fatal("the session's turn is still held after the panic")
			}
		})
	}
}

// brokenClient is a response writer whose connection fails once broken is
// set, as one whose client has gone.
type brokenClient struct {
	header  http.Header
	written strings.Builder
	broken  bool
}

func (c *brokenClient) Header() http.Header { return c.header }
func (c *brokenClient) WriteHeader(int)     {}

func (c *brokenClient) Write(p []byte) (int, error) {
	if c.broken {
		return 0, syscall.EPIPE
	}
	return c.written.Write(p)
}

func (c *brokenClient) FlushError() error {
	if c.broken {
		return syscall.EPIPE
	}
	return nil
}

// TestDrainingWriterSwallowsAfterFailure: once the client is gone, writes,
// flushes (through http.ResponseController, as reverse_proxy makes them)
// and copies through the sessionWriter below report success and drain
// their source, so the proxy reads the upstream response to its end.
func TestDrainingWriterSwallowsAfterFailure(t *testing.T) {
	h := &Handler{Zone: "draining-unit"}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	for _, failure := range []string{"write", "flush"} {
		client := &brokenClient{header: http.Header{}}
		sw := &sessionWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: client}, h: h}
		w := &drainingWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: sw}, h: h, session: &sessionName{key: "k"}}
		rc := http.NewResponseController(w)
		if _, err := w.Write([]byte("head ")); err != nil || rc.Flush() != nil {
			t.Fatalf("%s: before the failure: %v", failure, err)
		}
		client.broken = true
		switch failure {
		case "write":
			if n, err := w.Write([]byte("lost")); n != 4 || err != nil {
				t.Fatalf("failing write: %d, %v; want 4, nil", n, err)
			}
		case "flush":
			if err := rc.Flush(); err != nil {
				t.Fatalf("failing flush: %v, want nil", err)
			}
		}
		if !w.failed {
			t.Fatalf("%s failure not noticed", failure)
		}
		client.broken = false // would a write still reach it, it shows
		if n, err := w.Write([]byte("body")); n != 4 || err != nil || rc.Flush() != nil {
			t.Fatalf("%s: write after the failure: %d, %v", failure, n, err)
		}
		src := strings.NewReader("rest of the upstream response")
		if n, err := w.ReadFrom(src); n != int64(src.Size()) || err != nil || src.Len() != 0 {
			t.Fatalf("%s: copy after the failure: %d, %v, %d left", failure, n, err, src.Len())
		}
		if got := client.written.String(); got != "head " {
			t.Fatalf("%s: client got %q after the failure, want only \"head \"", failure, got)
		}
	}
}
