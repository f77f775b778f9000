package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func provision(t *testing.T, h *Handler) error {
	t.Helper()
	_, err := provisionIn(t, h)
	return err
}

// provisionIn provisions h in a config of its own, as Caddy does, and
// returns that config's session_queue app, which is cleaned up (leaving
// the zone) when the test ends. The app is not started.
func provisionIn(t testing.TB, h *Handler) (*App, error) {
	t.Helper()
	ctx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = h.Provision(ctx)
	app, appErr := ctx.App("session_queue")
	if appErr != nil {
		t.Fatal(appErr)
	}
	t.Cleanup(func() { _ = app.(*App).Cleanup() })
	return app.(*App), err
}

func TestProvisionDefaults(t *testing.T) {
	h := &Handler{Zone: "defaults-test"}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	if strings.Join(h.Cookies, " ") != "PHPSESSID CGISESSID ci_session" || h.MaxReaders != 4 ||
		h.MaxWaiting != 256 || time.Duration(h.MaxWait) != 30*time.Second ||
		time.Duration(h.RetryAfter) != time.Second || h.MaxHold != 0 {
		t.Fatalf("defaults: %+v", h)
	}
	if got := h.zone.table.Limits(); got.MaxReaders != 4 || got.MaxWaiting != 256 {
		t.Fatalf("zone limits %+v", got)
	}
	if h.regenerateGrace != DefaultRegenerateGrace || !h.forwarding {
		t.Fatalf("regenerate_grace %s, forwarding %v; want %s, true", h.regenerateGrace, h.forwarding, DefaultRegenerateGrace)
	}
}

// TestProvisionForwardingOff: regenerate_grace 0 stays 0 (it used to
// become the default), and forward_regenerated false turns forwarding off.
func TestProvisionForwardingOff(t *testing.T) {
	off := false
	h := &Handler{Zone: "forwarding-off-test", RegenerateGrace: new(caddy.Duration(0)), ForwardRegenerated: &off}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	if h.regenerateGrace != 0 || h.forwarding {
		t.Fatalf("regenerate_grace %s, forwarding %v; want 0, false", h.regenerateGrace, h.forwarding)
	}
}

func TestProvisionRejectsBadJSON(t *testing.T) {
	tests := []struct {
		h    Handler
		want string
	}{
		{Handler{MaxReaders: -1}, "session_queue: max_readers: must be at least 1, got -1"},
		{Handler{MaxWaiting: -3}, "session_queue: max_waiting: must not be negative, got -3"},
		{Handler{MaxWait: -1}, "session_queue: max_wait: must not be negative"},
		{Handler{RetryAfter: -1}, "session_queue: retry_after: must not be negative"},
		{Handler{MaxHold: -1}, "session_queue: max_hold: must not be negative"},
		{Handler{Cookies: []string{"bad name"}}, `session_queue: cookies: invalid cookie name "bad name"`},
		{Handler{Header: []string{"X:Y"}}, `session_queue: header: invalid header field name "X:Y"`},
		{Handler{Query: []string{""}}, "session_queue: query: empty parameter name"},
		{Handler{KeyPattern: "(a)(b)"}, "session_queue: key_pattern:"},
		{Handler{KeyPattern: "(unclosed"}, "session_queue: key_pattern:"},
		{Handler{Mint: &MintConfig{Format: "uuid"}}, "session_queue: mint:"},
		{Handler{Mint: &MintConfig{Format: "php", Length: 10}}, "session_queue: mint: php"},
		{Handler{OnDuplicate: "ignore"}, `session_queue: on_duplicate: want log or reject, got "ignore"`},
		{Handler{Decoding: "raw"}, `session_queue: decoding: want php, cgi, plack or none, got "raw"`},
		{Handler{TrackWindow: -1}, "session_queue: track_window: must not be negative"},
		{Handler{RegenerateGrace: new(caddy.Duration(-1))}, "session_queue: regenerate_grace: must not be negative"},
	}
	for _, tt := range tests {
		h := tt.h
		err := provision(t, &h)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.h, err, tt.want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60",
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestIsLongLived(t *testing.T) {
	tests := []struct {
		header, value string
		want          bool
	}{
		{"Upgrade", "websocket", true},
		{"Upgrade", "WebSocket", true},
		{"Upgrade", "h2c", false},
		{"Accept", "text/event-stream", true},
		{"Accept", "text/html, text/event-stream;q=0.9", true},
		{"Accept", "text/html", false},
		{"Accept", "text/event-streamer", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set(tt.header, tt.value)
		if got := isLongLived(r); got != tt.want {
			t.Errorf("%s: %s → %v, want %v", tt.header, tt.value, got, tt.want)
		}
	}

	// Extended CONNECT as Go's HTTP/2 server (h2_bundle.go,
	// newWriterAndRequestNoBody: header.Set(":protocol", ...)) and quic-go's
	// HTTP/3 server (http3/headers.go: Proto = the :protocol value) hand it
	// to handlers.
	extended := []struct {
		name       string
		protoMajor int
		proto      string
		protocol   string
		want       bool
	}{
		{"h2 websocket", 2, "HTTP/2.0", "websocket", true},
		{"h2 other tunnel", 2, "HTTP/2.0", "webtransport", true},
		{"h2 plain CONNECT", 2, "HTTP/2.0", "", false},
		{"h3 websocket", 3, "websocket", "", true},
		{"h3 plain CONNECT", 3, "HTTP/3.0", "", false},
		{"h1 CONNECT", 1, "HTTP/1.1", "", false},
	}
	for _, tt := range extended {
		r := httptest.NewRequest(http.MethodConnect, "/chat", nil)
		r.ProtoMajor, r.Proto = tt.protoMajor, tt.proto
		if tt.protocol != "" {
			r.Header.Set(":protocol", tt.protocol)
		}
		if got := isLongLived(r); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
