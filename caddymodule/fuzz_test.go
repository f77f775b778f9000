package caddymodule

import (
	"net/http"
	"net/http/httptest"
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

// FuzzBindingCookies holds the handler's own reading of the binding cookie
// to net/http's: the token presentedBinding finds is the one
// r.CookiesNamed finds, and withoutBindingCookies strips what splitting
// the field at every ";" would.
func FuzzBindingCookies(f *testing.F) {
	const token = "Jx0hC3oQ7nLwR2yTb5kZ9A"
	for _, seed := range []string{
		"PHPSESSID=s; sq_binding=" + token,
		"sq_binding=" + token + "; PHPSESSID=s",
		"a=1; sq_binding=" + token + "; b=2",
		"__Host-sq_binding=" + token + "; sq_binding=" + token,
		"sq_binding=\"" + token + "\"",
		" sq_binding =" + token + " ;;",
		"sq_binding=" + token + "; sq_binding=" + token + "\\",
		"a=1;;sq_binding=x; ;b",
	} {
		f.Add(seed, "", false)
		f.Add(seed, "c=3", true)
	}
	f.Fuzz(func(t *testing.T, line, other string, secure bool) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = []string{line, other}
		name := bindingCookie
		if secure {
			name = secureBindingCookie
		}
		want := ""
		if cookies := r.CookiesNamed(name); len(cookies) == 1 && validBindingToken(cookies[0].Value) {
			want = cookies[0].Value
		}
		if strings.Count(line, ";")+strings.Count(other, ";") < 3000 { // CookiesNamed's limit
			if got := presentedBinding(r, secure); got != want {
				t.Fatalf("presentedBinding = %q, CookiesNamed finds %q", got, want)
			}
		}
		var kept []string
		for _, part := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(part, "=")
			if name = strings.TrimSpace(name); name != bindingCookie && name != secureBindingCookie {
				kept = append(kept, part)
			}
		}
		if got, want := withoutBindingCookies(line), strings.TrimSpace(strings.Join(kept, ";")); got != want {
			t.Fatalf("withoutBindingCookies(%q) = %q, want %q", line, got, want)
		}
	})
}
