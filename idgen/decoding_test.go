package idgen

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// The expectations for php, cgi and plack were read off PHP 8.2's php-cgi
// ($_COOKIE and session_id()), Perl's CGI.pm (CGI->cookie) and
// Cookie::Baker's crush_cookie (Plack) given each Cookie header.
func TestDecodingCookie(t *testing.T) {
	tests := []struct {
		decoding Decoding
		name     string
		headers  []string
		want     string
		present  bool
	}{
		{DecodePHP, "single", []string{"PHPSESSID=abc"}, "abc", true},
		{DecodePHP, "percent-decoded value", []string{"PHPSESSID=abc%641234"}, "abcd1234", true},
		{DecodePHP, "plus stays", []string{"PHPSESSID=abc+d"}, "abc+d", true},
		{DecodePHP, "bad escape stays", []string{"PHPSESSID=abc%2"}, "abc%2", true},
		{DecodePHP, "dot in name", []string{"PHP.SESSID=abc"}, "", false},
		{DecodePHP, "dot folds into the configured name", []string{"ci.session=abc"}, "", false},
		{DecodePHP, "name is not percent-decoded", []string{"PHP%53ESSID=abc"}, "", false},
		{DecodePHP, "first of duplicates wins", []string{"PHPSESSID=first; PHPSESSID=second"}, "first", true},
		{DecodePHP, "first across header fields", []string{"x=1", "PHPSESSID=one", "PHPSESSID=two"}, "one", true},
		{DecodePHP, "leading white space", []string{"\tPHPSESSID=tab"}, "tab", true},
		{DecodePHP, "quotes stay", []string{`PHPSESSID="abc"`}, `"abc"`, true},
		{DecodePHP, "comma is no separator", []string{"x=1, PHPSESSID=abc"}, "", false},
		{DecodePHP, "comma in value", []string{"PHPSESSID=a,b; c=d"}, "a,b", true},
		{DecodePHP, "array shadows a later value", []string{"PHPSESSID[]=arr; PHPSESSID=after"}, "", true},
		{DecodePHP, "unclosed bracket", []string{"PHPSESSID[=x1"}, "", false},
		{DecodePHP, "trailing space in name", []string{"PHPSESSID =abc"}, "", false},
		{DecodePHP, "empty value", []string{"PHPSESSID="}, "", true},
		{DecodePHP, "no value", []string{"PHPSESSID"}, "", false},
		{DecodePHP, "case-sensitive", []string{"phpsessid=abc"}, "", false},
		{DecodePHP, "absent", nil, "", false},

		{DecodeCGI, "percent-decoded value", []string{"PHPSESSID=abc%641234"}, "abcd1234", true},
		{DecodeCGI, "plus is a space", []string{"PHPSESSID=a+b"}, "a b", true},
		{DecodeCGI, "name is percent-decoded", []string{"PHP%53ESSID=x1"}, "x1", true},
		{DecodeCGI, "first wins", []string{"PHPSESSID=first; PHPSESSID=second"}, "first", true},
		{DecodeCGI, "empty first wins", []string{"PHPSESSID=; PHPSESSID=second"}, "", true},
		{DecodeCGI, "comma separates", []string{"x=1,PHPSESSID=comma"}, "comma", true},
		{DecodeCGI, "quotes stay", []string{`PHPSESSID="q"`}, `"q"`, true},
		{DecodeCGI, "cut at ampersand", []string{"PHPSESSID=a&b"}, "a", true},
		{DecodeCGI, "trimmed", []string{" PHPSESSID=sp "}, "sp", true},
		{DecodeCGI, "dot stays", []string{"PHP.SESSID=dot"}, "", false},

		{DecodePlack, "percent-decoded value", []string{"PHPSESSID=abc%641234"}, "abcd1234", true},
		{DecodePlack, "plus stays", []string{"PHPSESSID=a+b"}, "a+b", true},
		{DecodePlack, "name is percent-decoded", []string{"PHP%53ESSID=x1"}, "x1", true},
		{DecodePlack, "first wins", []string{"PHPSESSID=first; PHPSESSID=second"}, "first", true},
		{DecodePlack, "empty first wins", []string{"PHPSESSID=; PHPSESSID=second"}, "", true},
		{DecodePlack, "comma is no separator", []string{"x=1,PHPSESSID=comma"}, "", false},
		{DecodePlack, "quotes removed, then decoded", []string{`PHPSESSID="q%41"`}, "qA", true},
		{DecodePlack, "ampersand stays", []string{"PHPSESSID=a&b"}, "a&b", true},
		{DecodePlack, "trimmed", []string{" PHPSESSID=sp "}, "sp", true},
		{DecodePlack, "no space needed", []string{"a=1;PHPSESSID=nospace"}, "nospace", true},
		{DecodePlack, "dot stays", []string{"PHP.SESSID=dot"}, "", false},
		{DecodePlack, "space before = is in the name", []string{"PHPSESSID =sp"}, "", false},
		{DecodePlack, "no %u", []string{"PHPSESSID=%u0041"}, "%u0041", true},

		{DecodeNone, "quoted", []string{`PHPSESSID="abc"`}, "abc", true},
		{DecodeNone, "spaces", []string{"  PHPSESSID = abc  ;x=1"}, "abc", true},
		{DecodeNone, "no decoding", []string{"PHPSESSID=abc%64"}, "abc%64", true},
		{DecodeNone, "first wins", []string{"PHPSESSID=first; PHPSESSID=second"}, "first", true},
		{DecodeNone, "prefix is not a match", []string{"XPHPSESSID=abc"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.decoding.String()+"/"+tt.name, func(t *testing.T) {
			name := "PHPSESSID"
			if tt.name == "dot folds into the configured name" {
				name = "ci_session"
				tt.want, tt.present = "abc", true
			}
			got, present := tt.decoding.Cookie(http.Header{"Cookie": tt.headers}, name)
			if got != tt.want || present != tt.present {
				t.Fatalf("Cookie(%q) = %q, %v; want %q, %v", tt.headers, got, present, tt.want, tt.present)
			}
		})
	}
}

func TestDecodingSetCookie(t *testing.T) {
	tests := []struct {
		decoding Decoding
		headers  []string
		value    string
		want     []string
	}{
		{DecodePHP, nil, "new", []string{"PHPSESSID=new"}},
		{DecodePHP, []string{"a=1"}, "new", []string{"a=1; PHPSESSID=new"}},
		{DecodePHP, []string{"a=1; PHPSESSID=old; b=2"}, "new", []string{"a=1; PHPSESSID=new; b=2"}},
		{DecodePHP, []string{"PHPSESSID=abc%64; PHPSESSID=x"}, "new", []string{"PHPSESSID=new; PHPSESSID=x"}},
		{DecodePHP, []string{"a=1; PHP.SESSID=old"}, "new", []string{"a=1; PHP.SESSID=old; PHPSESSID=new"}},
		{DecodePHP, []string{"a=1; PHPSESSID[]=old"}, "new", []string{"a=1; PHPSESSID=new"}},
		{DecodePHP, []string{"x=1", "PHPSESSID=old"}, "n%w", []string{"x=1", "PHPSESSID=n%25w"}},
		{DecodeCGI, []string{"a=1, PHP%53ESSID=old"}, "a+b,c", []string{"a=1, PHPSESSID=a%2Bb%2Cc"}},
		{DecodePlack, []string{"a=1; PHP%53ESSID=old ; b=2"}, "n%w+", []string{"a=1; PHPSESSID=n%25w+ ; b=2"}},
		{DecodeNone, []string{"PHPSESSID = old ; b=2"}, "new", []string{"PHPSESSID=new ; b=2"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.headers != nil {
			h["Cookie"] = append([]string(nil), tt.headers...)
		}
		tt.decoding.SetCookie(h, "PHPSESSID", tt.value)
		if got := h["Cookie"]; !slices.Equal(got, tt.want) {
			t.Errorf("%s: SetCookie(%q, %q) = %q, want %q", tt.decoding, tt.headers, tt.value, got, tt.want)
		}
		if got, _ := tt.decoding.Cookie(h, "PHPSESSID"); got != tt.value {
			t.Errorf("%s: after SetCookie(%q), the backend reads %q", tt.decoding, tt.value, got)
		}
	}
}

func TestDecodingQuery(t *testing.T) {
	tests := []struct {
		decoding Decoding
		query    string
		want     string
		present  bool
	}{
		{DecodePHP, "sid=a%62c", "abc", true},
		{DecodePHP, "sid=a&sid=b", "b", true},
		{DecodePHP, "s.id=a", "", false},
		{DecodePHP, "sid[]=a", "", true},
		{DecodePHP, "x=1&sid=a+b", "a b", true},
		{DecodeCGI, "sid=a&sid=b", "a", true},
		{DecodeCGI, "x=1;sid=c", "c", true},
		{DecodePlack, "sid=a&sid=b", "b", true},
		{DecodePlack, "x=1;sid=c", "c", true},
		{DecodePlack, "x=1& sid=d", "d", true},
		{DecodePlack, "sid=a+b%2B", "a b+", true},
		{DecodePlack, "s%69d=e", "e", true},
		{DecodePlack, "sid", "", true},
		{DecodeNone, "sid=a&sid=b", "a", true},
		{DecodeNone, "other=1", "", false},
	}
	for _, tt := range tests {
		got, present := tt.decoding.Query(tt.query, "sid")
		if got != tt.want || present != tt.present {
			t.Errorf("%s: Query(%q) = %q, %v; want %q, %v", tt.decoding, tt.query, got, present, tt.want, tt.present)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/?sid=abc%641234", nil)
	found, ok, err := Source{Query: []string{"sid"}}.Extract(r)
	if !ok || err != nil || found.ID != "abcd1234" {
		t.Fatalf("Extract = %+v, %v, %v; want the decoded ID", found, ok, err)
	}
}

func TestParseDecoding(t *testing.T) {
	for _, d := range []Decoding{DecodePHP, DecodeCGI, DecodePlack, DecodeNone} {
		if got, err := ParseDecoding(d.String()); err != nil || got != d {
			t.Errorf("ParseDecoding(%q) = %v, %v", d, got, err)
		}
	}
	if _, err := ParseDecoding("perl"); err == nil {
		t.Error("ParseDecoding(perl) succeeded")
	}
}

// TestUnescape: escapes anywhere in a value, at its end and cut short; runs
// between them are copied as they are.
func TestUnescape(t *testing.T) {
	for _, c := range []struct {
		in            string
		plus, percent bool
		want          string
	}{
		{"abc", true, true, "abc"},
		{"%41b%43", false, false, "AbC"},
		{"a+b%2Bc", false, false, "a+b+c"},
		{"a+b%2Bc", true, false, "a b+c"},
		{"%", true, true, "%"},
		{"ab%4", true, true, "ab%4"},
		{"%zz%41", true, true, "%zzA"},
		{"x%u00e9y", false, false, "x%u00e9y"},
		{"x%u00e9y", true, true, "xéy"},
		{"%u00e", true, true, "%u00e"},
		{"eyJpdiI6%2Bab%2Fcd%3D%3D", false, false, "eyJpdiI6+ab/cd=="},
	} {
		if got := unescape(c.in, c.plus, c.percent); got != c.want {
			t.Errorf("unescape(%q, %v, %v) = %q, want %q", c.in, c.plus, c.percent, got, c.want)
		}
	}
}
