package caddymodule

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestBindingTokens(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		token, _ := newBindingCookie(false)
		if len(token) != 22 || !validBindingToken(token) {
			t.Fatalf("newBindingCookie() = %q: not a valid 22-character token", token)
		}
		if seen[token] {
			t.Fatalf("token %q issued twice", token)
		}
		seen[token] = true
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 21), strings.Repeat("A", 23),
		strings.Repeat("A", 21) + "=", strings.Repeat("A", 21) + "+", strings.Repeat("A", 21) + "/",
		strings.Repeat("A", 21) + ".", strings.Repeat("A", 21) + " ", strings.Repeat("A", 21) + "é"[:1]} {
		if validBindingToken(bad) {
			t.Errorf("validBindingToken(%q) = true", bad)
		}
	}
}

func TestPresentedBinding(t *testing.T) {
	good, _ := newBindingCookie(false)
	other, _ := newBindingCookie(false)
	tests := []struct {
		name   string
		cookie string
		secure bool
		want   string
	}{
		{"http", "PHPSESSID=x; sq_binding=" + good, false, good},
		{"https reads the __Host- cookie", "__Host-sq_binding=" + good, true, good},
		{"https ignores the plain cookie", "sq_binding=" + good, true, ""},
		{"http ignores the __Host- cookie", "__Host-sq_binding=" + good, false, ""},
		{"malformed", "sq_binding=" + good + "x", false, ""},
		{"two of them", "sq_binding=" + good + "; sq_binding=" + other, false, ""},
		{"none", "PHPSESSID=x", false, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", tt.cookie)
		if got := presentedBinding(r, tt.secure); got != tt.want {
			t.Errorf("%s: presentedBinding = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestStripBindingCookies(t *testing.T) {
	tests := []struct {
		name   string
		before []string
		after  []string
	}{
		{"only the binding", []string{"sq_binding=t"}, nil},
		{"first", []string{"sq_binding=t; PHPSESSID=s; a=1"}, []string{"PHPSESSID=s; a=1"}},
		{"middle", []string{"PHPSESSID=s; __Host-sq_binding=t; a=1"}, []string{"PHPSESSID=s; a=1"}},
		{"last", []string{"PHPSESSID=s; sq_binding=t"}, []string{"PHPSESSID=s"}},
		{"both names", []string{"sq_binding=t; __Host-sq_binding=u; a=1"}, []string{"a=1"}},
		{"own field dropped", []string{"a=1", "sq_binding=t", "b=2"}, []string{"a=1", "b=2"}},
		{"similar names kept", []string{"xsq_binding=1; sq_binding_x=2"}, []string{"xsq_binding=1; sq_binding_x=2"}},
		{"value mentioning the name kept", []string{"a=sq_binding"}, []string{"a=sq_binding"}},
		{"no cookies", nil, nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, line := range tt.before {
			r.Header.Add("Cookie", line)
		}
		stripBindingCookies(r)
		if got := r.Header["Cookie"]; strings.Join(got, "|") != strings.Join(tt.after, "|") || (got == nil) != (tt.after == nil) {
			t.Errorf("%s: Cookie = %q, want %q", tt.name, got, tt.after)
		}
	}
}

func TestRequestIsHTTPS(t *testing.T) {
	tests := []struct {
		name    string
		tls     bool
		trusted bool
		proto   []string
		want    bool
	}{
		{"plain", false, false, nil, false},
		{"TLS", true, false, nil, true},
		{"trusted proxy says https", false, true, []string{"https"}, true},
		{"trusted proxy says http", false, true, []string{"http"}, false},
		{"trusted proxy, last value counts", false, true, []string{"http", "HTTPS"}, true},
		{"trusted proxy, last list item counts", false, true, []string{"https, http"}, false},
		{"untrusted client says https", false, false, []string{"https"}, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for _, v := range tt.proto {
			r.Header.Add("X-Forwarded-Proto", v)
		}
		ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tt.trusted})
		if got := requestIsHTTPS(r.WithContext(ctx)); got != tt.want {
			t.Errorf("%s: requestIsHTTPS = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBindingCookieIssued: a browser is given a binding token by a
// response that sets or mints its session cookie, or to a request that
// carries a session cookie seen before, and keeps the one it has.
func TestBindingCookieIssued(t *testing.T) {
	held, _ := newBindingCookie(false)
	tests := []struct {
		name      string
		forward   bool
		req       sessionRequest
		setCookie string // what the backend sets
		want      string // the binding cookie's name, or "" for none
	}{
		{"session cookie seen before, no binding", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1", knownID: true}, "", bindingCookie},
		{"session cookie seen for the first time", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1"}, "", ""},
		{"over https", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1", knownID: true, secure: true}, "", secureBindingCookie},
		{"binding held", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1", knownID: true, binding: held}, "", ""},
		{"session issued", true, sessionRequest{}, "PHPSESSID=issued-id; Path=/", bindingCookie},
		{"session regenerated", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1"}, "PHPSESSID=new-id; Path=/", bindingCookie},
		{"session minted", true, sessionRequest{cookie: "PHPSESSID", upstreamID: "minted-id", minted: true}, "", bindingCookie},
		{"no session", true, sessionRequest{}, "", ""},
		{"forwarding off", false, sessionRequest{cookie: "PHPSESSID", upstreamID: "s1", knownID: true}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Zone: "binding-test", ForwardRegenerated: &tt.forward}
			if err := provision(t, h); err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if tt.setCookie != "" {
				rec.Header().Add("Set-Cookie", tt.setCookie)
			}
			tt.req.client = "192.0.2.1"
			sw := &sessionWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: rec}, h: h, req: tt.req}
			sw.WriteHeader(http.StatusOK)
			var got *http.Cookie
			for _, c := range rec.Result().Cookies() {
				if strings.HasSuffix(c.Name, bindingCookie) {
					if got != nil {
						t.Fatalf("two binding cookies set: %v", rec.Header()["Set-Cookie"])
					}
					got = c
				}
			}
			if tt.want == "" {
				if got != nil {
					t.Fatalf("binding cookie set: %v", got)
				}
				return
			}
			if got == nil {
				t.Fatalf("no binding cookie set: %v", rec.Header()["Set-Cookie"])
			}
			if got.Name != tt.want || !validBindingToken(got.Value) || got.Path != "/" || !got.HttpOnly ||
				got.SameSite != http.SameSiteLaxMode || got.Secure != tt.req.secure || got.Domain != "" {
				t.Fatalf("binding cookie %+v", got)
			}
		})
	}
}

// TestBindingCookieFromTheSecondRequest: through the handler, a session
// ID the zone has not seen gets no binding cookie with its first response
// (a client that keeps no cookies would get a new one with every
// response), and the next request carrying it gets one.
func TestBindingCookieFromTheSecondRequest(t *testing.T) {
	h := &Handler{Zone: "binding-second-request"}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	serve := func(cookie string) []string {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", cookie)
		withReplacer(r)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, next); err != nil {
			t.Fatal(err)
		}
		return rec.Header()["Set-Cookie"]
	}
	if got := serve("PHPSESSID=first-seen-0123456789"); len(got) != 0 {
		t.Fatalf("first request with the ID: Set-Cookie %q, want none", got)
	}
	got := serve("PHPSESSID=first-seen-0123456789")
	if len(got) != 1 || !strings.HasPrefix(got[0], bindingCookie+"=") {
		t.Fatalf("second request with the ID: Set-Cookie %q, want a binding cookie", got)
	}
	token := strings.TrimPrefix(strings.SplitN(got[0], ";", 2)[0], bindingCookie+"=")
	if got := serve("PHPSESSID=first-seen-0123456789; " + bindingCookie + "=" + token); len(got) != 0 {
		t.Fatalf("request with its binding: Set-Cookie %q, want none", got)
	}
}

// TestBindingSetCookie: the field written out by hand is the one
// http.SetCookie writes for the binding cookie, with the token returned.
func TestBindingSetCookie(t *testing.T) {
	for _, secure := range []bool{false, true} {
		token, field := newBindingCookie(secure)
		want := &http.Cookie{Name: bindingCookie, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
		if secure {
			want.Name, want.Secure = secureBindingCookie, true
		}
		if field != want.String() {
			t.Errorf("secure %v: %q, http.SetCookie writes %q", secure, field, want.String())
		}
	}
}
