package idgen

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestResponseCookie(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		lines  []string
		action CookieAction
		value  string
		err    error
	}{
		{"none", nil, CookieUntouched, "", nil},
		{"other cookies only", []string{"theme=dark; Path=/", "PHPSESSIDX=x"}, CookieUntouched, "", nil},
		{"set", []string{"PHPSESSID=s2; path=/; HttpOnly"}, CookieSet, "s2", nil},
		{"set among others", []string{"a=1", "PHPSESSID=s2", "b=2"}, CookieSet, "s2", nil},
		{"quoted", []string{`PHPSESSID="s2"`}, CookieSet, "s2", nil},
		{"URL-encoded, as PHP sets it", []string{"PHPSESSID=a%2Cb-c"}, CookieSet, "a,b-c", nil},
		{"spaces around the name", []string{" PHPSESSID =s2"}, CookieSet, "s2", nil},
		{"name is case-sensitive", []string{"phpsessid=s2"}, CookieUntouched, "", nil},
		{"last one wins", []string{"PHPSESSID=s2", "PHPSESSID=s3"}, CookieSet, "s3", nil},
		{"set after delete", []string{"PHPSESSID=deleted; Max-Age=0", "PHPSESSID=s3"}, CookieSet, "s3", nil},
		{"delete after set", []string{"PHPSESSID=s2", "PHPSESSID=; Max-Age=0"}, CookieDeleted, "", nil},
		{"unparseable line is skipped", []string{"PHPSESSID=s2", `PHPSESSID=a"b`}, CookieSet, "s2", nil},
		{"PHP logout", []string{"PHPSESSID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0; path=/"}, CookieDeleted, "", nil},
		{"empty value", []string{"PHPSESSID=; path=/"}, CookieDeleted, "", nil},
		{"Max-Age=0", []string{"PHPSESSID=x; Max-Age=0"}, CookieDeleted, "", nil},
		{"negative Max-Age", []string{"PHPSESSID=x; Max-Age=-1"}, CookieDeleted, "", nil},
		{"Expires in the past", []string{"PHPSESSID=x; Expires=Sun, 01 Mar 2026 11:59:59 GMT"}, CookieDeleted, "", nil},
		{"Expires now", []string{"PHPSESSID=x; Expires=Sun, 01 Mar 2026 12:00:00 GMT"}, CookieDeleted, "", nil},
		{"Expires in the future", []string{"PHPSESSID=s2; Expires=Sun, 01 Mar 2026 12:00:01 GMT"}, CookieSet, "s2", nil},
		{"Max-Age wins over past Expires", []string{"PHPSESSID=s2; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60"}, CookieSet, "s2", nil},
		{"unparseable Expires is ignored", []string{"PHPSESSID=s2; Expires=yesterday"}, CookieSet, "s2", nil},
		{"another session cookie", []string{"CGISESSID=9f86d081884c7d659a2feaa0c55ad015; path=/"}, CookieUntouched, "", nil},
		{"too long", []string{"PHPSESSID=" + strings.Repeat("a", MaxLength+1)}, CookieSet, "", ErrTooLong},
		{"bad characters", []string{"PHPSESSID=a<b"}, CookieSet, "", ErrBadChars},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Set-Cookie": tt.lines}
			action, value, err := Source{Decoding: DecodePHP}.ResponseCookie(h, "PHPSESSID", now)
			if action != tt.action || value != tt.value || !errors.Is(err, tt.err) {
				t.Fatalf("ResponseCookie = %v, %q, %v; want %v, %q, %v", action, value, err, tt.action, tt.value, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "a<b") {
				t.Fatalf("error %q contains the refused value", err)
			}
		})
	}
}

// TestResponseCookieDecodingToEmpty: a value that the backend reads as
// empty (under CGI.pm, a value cut at its first "&") is no session, as an
// empty value is. Found by FuzzResponseCookie: it used to count as setting
// the empty ID, which the response side then linked to the request's ID
// and tracked as issued, so that every such response looked like one ID
// issued to many clients (a duplicate, 502 under on_duplicate reject).
func TestResponseCookieDecodingToEmpty(t *testing.T) {
	h := http.Header{"Set-Cookie": {"CGISESSID=&x; path=/"}}
	action, value, err := Source{Decoding: DecodeCGI}.ResponseCookie(h, "CGISESSID", time.Now())
	if action != CookieDeleted || value != "" || err != nil {
		t.Fatalf("ResponseCookie = %v, %q, %v; want deleted", action, value, err)
	}
}

func BenchmarkResponseCookie(b *testing.B) {
	now := time.Now()
	for _, bc := range []struct {
		name  string
		lines []string
	}{
		{"other cookies", []string{"theme=dark; Path=/; Max-Age=31536000", "_csrf=abc; Path=/; HttpOnly"}},
		{"regeneration", []string{"theme=dark; Path=/", "PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; path=/; HttpOnly; SameSite=Lax"}},
	} {
		h := http.Header{"Set-Cookie": bc.lines}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Source{Decoding: DecodePHP}.ResponseCookie(h, "PHPSESSID", now)
			}
		})
	}
}

// TestResponseCookieAllocations: a response that sets the session cookie
// again, as PHP (with session.cookie_lifetime) and Laravel do on every
// response, is read without allocating.
func TestResponseCookieAllocations(t *testing.T) {
	h := http.Header{"Set-Cookie": {"theme=dark; Path=/",
		"PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; expires=Mon, 30-Nov-2099 11:49:48 GMT; Max-Age=7200; path=/; HttpOnly; SameSite=Lax"}}
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		if action, _, _ := (Source{Decoding: DecodePHP}).ResponseCookie(h, "PHPSESSID", now); action != CookieSet {
			t.Fatalf("action %v, want set", action)
		}
	})
	if allocs > 0 {
		t.Errorf("%.0f allocations to read the session cookie set again, want 0", allocs)
	}
}
