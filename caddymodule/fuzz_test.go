package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile parses fuzzed session_queue blocks: a block never
// panics, and every error it gives names the directive, so that whoever
// wrote the config finds the line to fix.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"session_queue",
		"session_queue {\n}",
		"session_queue {\n\tcookies SID other\n\tquery sid\n\theader X-Sid\n\tdecoding cgi\n}",
		"session_queue {\n\tread_only method GET HEAD\n\tread_only {\n\t\tpath /api/*\n\t}\n\tbypass none\n}",
		"session_queue {\n\tmax_readers 3\n\tmax_waiting 7\n\tmax_wait 5s\n\tretry_after 2s\n\tmax_hold 1m\n}",
		"session_queue {\n\tkey_pattern `^(?:[^-]*-){5}(.+)$`\n\tregenerate_grace 0\n\tforward_regenerated off\n}",
		"session_queue {\n\ttrack_window 1h\n\ton_duplicate reject\n\tzone shop\n}",
		"session_queue {\n\tmint php 48 5\n}",
		"session_queue {\n\tmint base64url\n}",
		"session_queue {\n\tmax_readers -1\n\tmax_wait -5s\n}",
		"session_queue extra {\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil && !strings.Contains(err.Error(), "session_queue") {
			t.Fatalf("the error does not name the directive: %v", err)
		}
	})
}
