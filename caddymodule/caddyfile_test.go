package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`session_queue {
		cookies     SID other
		query       sid
		header      X-Session-Id
		decoding    cgi
		read_only   method GET HEAD
		read_only   {
			path /api/*
			method POST
		}
		max_readers 3
		max_waiting 7
		max_wait    5s
		retry_after 2s
		max_hold    1m
		zone        shop
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if strings.Join(h.Cookies, ",") != "SID,other" || h.Query[0] != "sid" || h.Header[0] != "X-Session-Id" || h.Decoding != "cgi" ||
		h.MaxReaders != 3 || h.MaxWaiting != 7 || h.MaxWait != caddy.Duration(5*time.Second) ||
		h.RetryAfter != caddy.Duration(2*time.Second) || h.MaxHold != caddy.Duration(time.Minute) || h.Zone != "shop" {
		t.Fatalf("parsed %+v", h)
	}
	got, _ := json.Marshal(h.ReadOnlyRaw)
	want := `[{"method":["GET","HEAD"]},{"method":["POST"],"path":["/api/*"]}]`
	if string(got) != want {
		t.Fatalf("read_only = %s, want %s", got, want)
	}
}

// adapt turns a whole Caddyfile into JSON.
func adapt(t *testing.T, src string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	return string(out), err
}

// TestDirectiveOrder: without an `order` option or a route block, a
// site-level session_queue runs before the handlers it must guard.
func TestDirectiveOrder(t *testing.T) {
	out, err := adapt(t, `:8080 {
		php_fastcgi unix//run/php.sock
		respond /health 200
		handle /api/* {
			reverse_proxy 127.0.0.1:9000
		}
		session_queue
		forward_auth 127.0.0.1:9100 {
			uri /auth
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	pos := func(s string) int {
		i := strings.Index(out, s)
		if i < 0 {
			t.Fatalf("%s not in %s", s, out)
		}
		return i
	}
	queue := pos(`"handler":"session_queue"`)
	if auth := pos(`"uri":"/auth"`); auth > queue {
		t.Error("session_queue runs before forward_auth")
	}
	for _, later := range []string{`"handler":"subroute"`, `"handler":"static_response"`, `"transport":{"protocol":"fastcgi"`} {
		if pos(later) < queue {
			t.Errorf("%s runs before session_queue", later)
		}
	}
}

func TestReadOnlyNamedMatcher(t *testing.T) {
	out, err := adapt(t, `:8080 {
		@reads path /read.php /status.php
		session_queue {
			read_only @reads
			read_only /ajax/poll
		}
		respond ok
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"read_only":[{"path":["/read.php","/status.php"]},{"path":["/ajax/poll"]}]`) {
		t.Fatalf("named matcher not resolved: %s", out)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	tests := map[string]string{
		"session_queue extra":                            "session_queue: unexpected argument",
		"session_queue {\n max_readers 0\n}":             "max_readers: must be at least 1",
		"session_queue {\n max_waiting 0\n}":             "max_waiting: must be at least 1",
		"session_queue {\n max_wait -2s\n}":              "max_wait: must not be negative",
		"session_queue {\n max_hold forever\n}":          `max_hold: invalid duration "forever"`,
		"session_queue {\n zone\n}":                      "zone: needs a name",
		"session_queue {\n read_only\n}":                 "read_only: needs a matcher",
		"session_queue {\n read_only nosuchmatcher x\n}": "read_only",
		"session_queue {\n read_only @named\n}":          "can only be used in a Caddyfile site",
		"session_queue {\n max_readers 1 2\n}":           "takes one number",
		"session_queue {\n cookies a\n cookies b\n}":     "cookies: specified more than once",
	}
	for src, want := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", src, err, want)
		}
	}
}

func TestBypassOption(t *testing.T) {
	out, err := adapt(t, `:8080 {
		session_queue {
			bypass path /poll/*
		}
		respond ok
	}
	:8081 {
		session_queue {
			bypass none
		}
		respond ok
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"bypass":[{"path":["/poll/*"]}]`, `"bypass":[{"expression":"false"}]`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s: %s", want, out)
		}
	}
}

func TestLifecycleOptions(t *testing.T) {
	d := caddyfile.NewTestDispenser(`session_queue {
		key_pattern      "^(?:[^-]*-){5}(.+)$"
		regenerate_grace 5s
		track_window     1h
		on_duplicate     reject
		mint             php 48 6
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.KeyPattern != "^(?:[^-]*-){5}(.+)$" || h.RegenerateGrace == nil || *h.RegenerateGrace != caddy.Duration(5*time.Second) ||
		h.TrackWindow != caddy.Duration(time.Hour) || h.OnDuplicate != "reject" ||
		h.Mint == nil || *h.Mint != (MintConfig{Format: "php", Length: 48, BitsPerCharacter: 6}) {
		t.Fatalf("parsed %+v (mint %+v)", h, h.Mint)
	}
	for src, want := range map[string]string{
		"session_queue {\n on_duplicate drop\n}": `on_duplicate: want log or reject, got "drop"`,
		"session_queue {\n decoding perl\n}":     `decoding: want php, cgi, plack or none, got "perl"`,
		"session_queue {\n mint\n}":              "mint: want <format>",
		"session_queue {\n mint php many\n}":     `mint: invalid number "many"`,
		"session_queue {\n key_pattern a b\n}":   "key_pattern: takes one argument",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", src, err, want)
		}
	}
}

func TestForwardingOptions(t *testing.T) {
	grace := func(d time.Duration) *caddy.Duration { v := caddy.Duration(d); return &v }
	forward := func(b bool) *bool { return &b }
	tests := []struct {
		options string
		grace   *caddy.Duration
		forward *bool
	}{
		{"", nil, nil},
		{"regenerate_grace 500ms", grace(500 * time.Millisecond), nil},
		{"regenerate_grace 0", grace(0), nil},
		{"regenerate_grace off", grace(0), nil},
		{"forward_regenerated off", nil, forward(false)},
		{"forward_regenerated on\nregenerate_grace 1s", grace(time.Second), forward(true)},
	}
	for _, tt := range tests {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("session_queue {\n" + tt.options + "\n}")); err != nil {
			t.Errorf("%q: %v", tt.options, err)
			continue
		}
		if (h.RegenerateGrace == nil) != (tt.grace == nil) || h.RegenerateGrace != nil && *h.RegenerateGrace != *tt.grace {
			t.Errorf("%q: regenerate_grace = %v, want %v", tt.options, h.RegenerateGrace, tt.grace)
		}
		if (h.ForwardRegenerated == nil) != (tt.forward == nil) || h.ForwardRegenerated != nil && *h.ForwardRegenerated != *tt.forward {
			t.Errorf("%q: forward_regenerated = %v, want %v", tt.options, h.ForwardRegenerated, tt.forward)
		}
	}
	for src, want := range map[string]string{
		"regenerate_grace":                                "regenerate_grace: needs a duration",
		"regenerate_grace -1s":                            "regenerate_grace: must not be negative",
		"regenerate_grace soon":                           `regenerate_grace: invalid duration "soon"`,
		"regenerate_grace off 2s":                         `regenerate_grace: unexpected "2s" after off`,
		"forward_regenerated":                             "forward_regenerated: needs on or off",
		"forward_regenerated yes":                         `forward_regenerated: want on or off, got "yes"`,
		"forward_regenerated off on":                      "forward_regenerated: takes one argument",
		"forward_regenerated on\nforward_regenerated off": "forward_regenerated: specified more than once",
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("session_queue {\n" + src + "\n}"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", src, err, want)
		}
	}

	// In JSON, a grace of 0 and forwarding off are written out, not
	// taken for unset.
	out, err := adapt(t, `:8080 {
		session_queue {
			regenerate_grace off
			forward_regenerated off
		}
		respond ok
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"regenerate_grace":0`, `"forward_regenerated":false`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s: %s", want, out)
		}
	}
}
