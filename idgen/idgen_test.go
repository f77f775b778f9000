package idgen

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := []string{"abc123", "a-b,c", "Zend-1-2-3-HASH", "x.y_z~%2B+/=", strings.Repeat("a", MaxLength)}
	for _, id := range good {
		if err := Validate(id); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", id, err)
		}
	}
	bad := map[string]error{
		strings.Repeat("a", MaxLength+1): ErrTooLong,
		"abc def":                        ErrBadChars,
		"abc;":                           ErrBadChars,
		"abc\x00":                        ErrBadChars,
		"é":                              ErrBadChars,
		`"quoted"`:                       ErrBadChars,
	}
	for id, want := range bad {
		if err := Validate(id); !errors.Is(err, want) {
			t.Errorf("Validate(%.20q) = %v, want %v", id, err, want)
		}
	}
}

func TestExtract(t *testing.T) {
	src := Source{
		Cookies: []string{"PHPSESSID", "CGISESSID"},
		Query:   []string{"sid"},
		Headers: []string{"x-session-id"},
	}
	tests := []struct {
		name    string
		target  string
		headers map[string]string
		id      string
		where   string
		ok      bool
		err     error
	}{
		{"none", "/", nil, "", "", false, nil},
		{"cookie", "/", map[string]string{"Cookie": "PHPSESSID=p1"}, "p1", "cookie PHPSESSID", true, nil},
		{"cookie order", "/", map[string]string{"Cookie": "CGISESSID=c1; PHPSESSID=p1"}, "p1", "cookie PHPSESSID", true, nil},
		{"second cookie", "/", map[string]string{"Cookie": "CGISESSID=c1"}, "c1", "cookie CGISESSID", true, nil},
		{"empty cookie falls through", "/?sid=q1", map[string]string{"Cookie": "PHPSESSID="}, "q1", "query sid", true, nil},
		{"cookie before query", "/?sid=q1", map[string]string{"Cookie": "PHPSESSID=p1"}, "p1", "cookie PHPSESSID", true, nil},
		{"query before header", "/?sid=q1", map[string]string{"X-Session-Id": "h1"}, "q1", "query sid", true, nil},
		{"header", "/", map[string]string{"X-Session-Id": "h1"}, "h1", "header X-Session-Id", true, nil},
		{"bad value", "/", map[string]string{"Cookie": "PHPSESSID=a<b"}, "", "cookie PHPSESSID", true, ErrBadChars},
		{"too long", "/", map[string]string{"Cookie": "PHPSESSID=" + strings.Repeat("x", 300)}, "", "cookie PHPSESSID", true, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			found, ok, err := src.Extract(r)
			if found.ID != tt.id || (tt.ok && found.Where() != tt.where) || ok != tt.ok || !errors.Is(err, tt.err) {
				t.Fatalf("Extract = %+v, %v, %v; want {%s %s}, %v, %v", found, ok, err, tt.id, tt.where, tt.ok, tt.err)
			}
			if err != nil && (strings.Contains(err.Error(), "a<b") || strings.Contains(err.Error(), "xxxx")) {
				t.Fatalf("error %q contains the refused value", err)
			}
		})
	}
}

func TestHash(t *testing.T) {
	a, b := Hash("session-a"), Hash("session-b")
	if len(a) != HashLength || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want %d lowercase hex characters", a, HashLength)
	}
	if a == b {
		t.Fatal("different IDs share a hash")
	}
	if Hash("session-a") != a {
		t.Fatal("Hash is not stable within a process")
	}
}

func BenchmarkHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Hash("v9l4b0r2k1mv3qf8tmd6s7j2a5")
	}
}

func BenchmarkExtractCookie(b *testing.B) {
	src := Source{Cookies: []string{"PHPSESSID", "CGISESSID", "ci_session"}}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "_ga=GA1.2.3; theme=dark; PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := src.Extract(r); !ok {
			b.Fatal("no ID")
		}
	}
}
