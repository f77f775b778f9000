package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// A browser's binding token proves that a request carrying a regenerated
// session ID comes from the browser whose request regenerated it, and only
// such requests are forwarded with the new ID (see idgen.Lineages.Forward).
// The session ID cannot prove it: whoever planted the old ID in the
// victim's browser (a session fixation) holds it too. Neither can the
// client address, shared behind a NAT or a proxy and forged in
// X-Forwarded-For. The token is random, lives in a cookie of its own that
// scripts cannot read, and over HTTPS in a __Host- cookie, which neither a
// sibling subdomain nor a URL nor a network attacker over plain HTTP can
// set. A browser is given one by a response that sets its session cookie,
// or to a request carrying a session cookie seen before (by the zone's
// duplicate tracker), so it holds it before it logs in, and the requests it
// still sends with the old ID after a login carry it too. A session cookie
// seen for the first time, one that predates the proxy or that the tracker
// has forgotten, gets its binding with the response to the next request
// carrying it, one round trip later; only a login in that very first
// request goes without forwarding for the requests the browser sent
// beside it.
const (
	// bindingCookie is the token's cookie over plain HTTP.
	bindingCookie = "sq_binding"
	// secureBindingCookie is the token's cookie over HTTPS; it is the only
	// one read there, as a cookie without the prefix may have been planted.
	secureBindingCookie = "__Host-" + bindingCookie
	// bindingBytes is the token's randomness: 128 bits.
	bindingBytes = 16
)

// bindingTokenLength is the length of a token: unpadded base64url of
// bindingBytes, a constant so that a token can be made in an array.
const bindingTokenLength = (bindingBytes*8 + 5) / 6

// newBindingCookie returns a fresh token from crypto/rand, and the
// Set-Cookie field that gives it to a browser, as http.SetCookie would
// write it. The token is a substring of the field, so that both cost one
// allocation: every response to a browser without a token makes them (wrk,
// which keeps no cookies, gets one on every response), and the token, being
// base64url, needs none of the checks http.Cookie makes.
func newBindingCookie(secure bool) (token, field string) {
	name, attributes := bindingCookie+"=", bindingAttributes
	if secure {
		name, attributes = secureBindingCookie+"=", secureBindingAttributes
	}
	var random [bindingBytes]byte
	_, _ = rand.Read(random[:]) // crypto/rand.Read never fails; it crashes the program instead
	var b [len(secureBindingCookie) + 1 + bindingTokenLength + len(secureBindingAttributes)]byte
	n := copy(b[:], name)
	base64.RawURLEncoding.Encode(b[n:], random[:])
	n += bindingTokenLength
	n += copy(b[n:], attributes)
	field = string(b[:n])
	return field[len(name) : len(name)+bindingTokenLength], field
}

// The binding cookie's attributes: scripts cannot read it, and it goes
// with top-level navigations from other sites (a login's redirect back)
// but not with their subrequests.
const (
	bindingAttributes       = "; Path=/; HttpOnly; SameSite=Lax"
	secureBindingAttributes = "; Path=/; HttpOnly; Secure; SameSite=Lax"
)

// validBindingToken reports whether v has the form of a token this module
// issues; anything else the client sends is ignored.
func validBindingToken(v string) bool {
	if len(v) != bindingTokenLength {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// presentedBinding returns the binding token the request carries, or ""
// when it carries none, a malformed one, or more than one (all but one
// were planted, and which is which cannot be told). It reads the Cookie
// header as r.CookiesNamed does (without its limit on the number of
// cookies, which bounds the allocations this does not make): a browser
// sends its token with every request, and CookiesNamed cost two
// allocations.
func presentedBinding(r *http.Request, secure bool) string {
	name := bindingCookie
	if secure {
		name = secureBindingCookie
	}
	token, found := "", 0
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			pairName, value, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(pairName) != name {
				continue
			}
			if value, ok := idgen.CookieValue(value); ok {
				token, found = value, found+1
			}
		}
	}
	if found != 1 || !validBindingToken(token) {
		return ""
	}
	return token
}

// headerMentions reports whether any of the field values contains s.
func headerMentions(values []string, s string) bool {
	for _, v := range values {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// requestIsHTTPS reports whether the client reached the site over HTTPS:
// directly, or through a trusted proxy (trusted_proxies) that says so in
// X-Forwarded-Proto, read as reverse_proxy does (the last value).
func requestIsHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return false
	}
	values := r.Header.Values("X-Forwarded-Proto")
	if len(values) == 0 {
		return false
	}
	last := values[len(values)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// stripBindingCookies removes both binding cookies from the request's
// Cookie header: the backend has no use for them, and a token that reached
// the backend could end up in its logs or pages.
func stripBindingCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if strings.Contains(line, bindingCookie) {
			line = withoutBindingCookies(line)
		}
		if line != "" {
			kept = append(kept, line)
		}
	}
	switch {
	case len(kept) == 0 && lines != nil:
		r.Header.Del("Cookie")
	case len(kept) != len(lines):
		r.Header["Cookie"] = kept
	}
}

// withoutBindingCookies returns one Cookie field without the binding
// cookies, the others as they were. When the binding cookies come first or
// last in the field, as the browser's token mostly does, that is a
// substring of it, which costs no allocation.
func withoutBindingCookies(line string) string {
	keptStart, keptEnd := -1, 0 // of the kept pairs, in line
	gap := false                // a binding cookie between kept pairs
	removed := false
	for start := 0; start <= len(line); {
		end := strings.IndexByte(line[start:], ';')
		if end < 0 {
			end = len(line)
		} else {
			end += start
		}
		name, _, _ := strings.Cut(line[start:end], "=")
		if name = strings.TrimSpace(name); name == bindingCookie || name == secureBindingCookie {
			removed = true
		} else {
			if keptStart < 0 {
				keptStart = start
			} else if removed {
				gap = true
			}
			keptEnd = end
			removed = false
		}
		start = end + 1
	}
	switch {
	case keptStart < 0:
		return ""
	case !gap:
		return strings.TrimSpace(line[keptStart:keptEnd])
	}
	parts := strings.Split(line, ";")
	kept := parts[:0]
	for _, part := range parts {
		name, _, _ := strings.Cut(part, "=")
		if name = strings.TrimSpace(name); name != bindingCookie && name != secureBindingCookie {
			kept = append(kept, part)
		}
	}
	return strings.TrimSpace(strings.Join(kept, ";"))
}
