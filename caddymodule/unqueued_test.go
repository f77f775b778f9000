package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// TestUnqueuedIsCountedAndWarned: a request whose session cookie cannot be
// a queue key is passed on, and that is never silent: it is counted by
// reason, and warned about once a minute per reason, with a hint and
// without the value.
func TestUnqueuedIsCountedAndWarned(t *testing.T) {
	h := &Handler{Zone: "unqueued-unit", Cookies: []string{"laravel_session"}}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	h.logger = zap.New(core)

	encrypted := "eyJpdiI6" + strings.Repeat("QUJD", 80) // like Laravel's ≈340-byte cookie
	served := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		served++
		return nil
	})
	send := func(value string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", "laravel_session="+value)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		send(encrypted)
	}
	send("has<angle>brackets")
	if served != 4 {
		t.Fatalf("%d of 4 unqueued requests served", served)
	}
	z := h.zone
	if got := z.unqueued.total[unqueuedTooLong].Load(); got != 3 {
		t.Errorf("too_long counted %d, want 3", got)
	}
	if got := z.unqueued.total[unqueuedBadCharacters].Load(); got != 1 {
		t.Errorf("bad_characters counted %d, want 1", got)
	}
	warnings := logs.All()
	if len(warnings) != 2 {
		t.Fatalf("%d warnings, want one per reason: %v", len(warnings), warnings)
	}
	for _, entry := range warnings {
		fields := entry.ContextMap()
		if fields["zone"] != "unqueued-unit" || fields["source"] != "cookie laravel_session" || fields["hint"] == "" {
			t.Errorf("warning fields %v", fields)
		}
		for _, v := range fields {
			if s, ok := v.(string); ok && (strings.Contains(s, "QUJD") || strings.Contains(s, "angle")) {
				t.Errorf("warning carries the value: %v", fields)
			}
		}
	}
	if hint := warnings[0].ContextMap()["hint"].(string); !strings.Contains(hint, "decrypt laravel") {
		t.Errorf("too_long hint %q does not name Laravel's fix", hint)
	}

	// A minute later the next one warns again, with the count since.
	h.unqueued("cookie laravel_session", idgen.ErrTooLong, time.Now().Add(unqueuedWarnEvery+time.Second))
	if all := logs.All(); len(all) != 3 || all[2].ContextMap()["count_since_last_warning"] != uint64(3) {
		t.Errorf("after a minute: %d warnings, last %v; want a third, counting 3", len(all), all[len(all)-1].ContextMap())
	}
}
