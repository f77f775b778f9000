package idgen

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The fuzz targets feed client and backend bytes to every parser in this
// package. Beyond "never panics", each checks a property the module relies
// on: an ID accepted as a queue key passes Validate, an ID written into a
// request or a Set-Cookie is read back unchanged by the same rules, and a
// queue key is never empty. `make fuzz` runs them for FUZZTIME each; their
// seeds (testdata/fuzz and the f.Add calls) run in every `go test`.

var decodings = []Decoding{DecodePHP, DecodeCGI, DecodeNone, DecodePlack}

// validIDFrom turns fuzz bytes into a valid ID of at least one character,
// so that round trips are tried on every shape of ID.
func validIDFrom(b string) string {
	var id strings.Builder
	for i := 0; i < len(b) && id.Len() < MaxLength; i++ {
		if idChar[b[i]] {
			id.WriteByte(b[i])
		}
	}
	if id.Len() == 0 {
		return "x"
	}
	return id.String()
}

// plainCookieName reports whether name is a token (as the module requires
// of configured cookie names) that every decoding reads back as written.
func plainCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}.%+`, c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzCookie reads a session cookie out of fuzzed Cookie header fields, then
// writes a new ID into them and reads it back, as a regeneration or a mint
// does before the request goes upstream.
func FuzzCookie(f *testing.F) {
	f.Add("PHPSESSID=abc123", "", "PHPSESSID", uint8(0), "new%ID+1")
	f.Add(" ci.session=abc%2F; a=b", "PHPSESSID=second", "ci_session", uint8(0), "z")
	f.Add("CGISESSID=a+b,CGISESSID=c", "x=1", "CGISESSID", uint8(1), "a,b&c")
	f.Add(`PHPSESSID="quoted" ; other=1`, "", "PHPSESSID", uint8(2), "plain")
	f.Add("PHPSESSID[]=x; PHPSESSID=y", "", "PHPSESSID", uint8(0), "id")
	f.Add("%50HPSESSID=x", "", "PHPSESSID", uint8(1), "%u0041")
	f.Fuzz(func(t *testing.T, line1, line2, name string, decoding uint8, newID string) {
		d := decodings[int(decoding)%len(decodings)]
		h := http.Header{"Cookie": {line1}}
		if line2 != "" {
			h["Cookie"] = append(h["Cookie"], line2)
		}
		if !plainCookieName(name) {
			name = "PHPSESSID"
		}
		src := Source{Cookies: []string{name}, Decoding: d}
		found, ok, err := src.Extract(&http.Request{Header: h, URL: &url.URL{}})
		if ok && err == nil {
			if verr := Validate(found.ID); verr != nil || found.ID == "" {
				t.Fatalf("Extract accepted %q, which Validate refuses: %v", found.ID, verr)
			}
		}
		if !ok && (err != nil || found.ID != "") {
			t.Fatalf("no ID but found %q, err %v", found.ID, err)
		}

		id := validIDFrom(newID)
		d.SetCookie(h, name, id)
		if got, present := d.Cookie(h, name); !present || got != id {
			t.Fatalf("%v: SetCookie(%q) then Cookie read %q (present %v) from %q", d, id, got, present, h["Cookie"])
		}
	})
}

// FuzzQuery reads a session ID out of a fuzzed query string and header.
func FuzzQuery(f *testing.F) {
	f.Add("PHPSESSID=a&PHPSESSID=b", "sid", uint8(0))
	f.Add("sid=a%2Bb;sid=c", "", uint8(1))
	f.Add("s%69d[]=x&sid=%zz", "header-value", uint8(2))
	f.Fuzz(func(t *testing.T, rawQuery, header string, decoding uint8) {
		d := decodings[int(decoding)%len(decodings)]
		r := &http.Request{Header: http.Header{"X-Session-Id": {header}}, URL: &url.URL{RawQuery: rawQuery}}
		src := Source{Query: []string{"PHPSESSID", "sid"}, Headers: []string{"X-Session-Id"}, Decoding: d}
		found, ok, err := src.Extract(r)
		if ok && err == nil && Validate(found.ID) != nil {
			t.Fatalf("Extract accepted %q, which Validate refuses", found.ID)
		}
		if ok && found.Kind != "query" && found.Kind != "header" {
			t.Fatalf("found in %q", found.Kind)
		}
		// The header is the last resort: taken only when no parameter
		// has a value, and then as sent.
		if ok && found.Kind == "header" && err == nil && found.ID != header {
			t.Fatalf("header ID %q, sent %q", found.ID, header)
		}
	})
}

// FuzzResponseCookie reads fuzzed Set-Cookie fields as the response side
// does, and checks that a session cookie set the way the backend sets it is
// read back as the ID the browser will send.
func FuzzResponseCookie(f *testing.F) {
	f.Add("PHPSESSID=abc; path=/; HttpOnly", "PHPSESSID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0", uint8(0), "a%b")
	f.Add("CGISESSID=x+y; Max-Age=-1", "other=1", uint8(1), "a+b,c")
	f.Add(`PHPSESSID="q"; Expires=Wed, 21 Oct 2099 07:28:00 GMT`, "", uint8(2), "id")
	f.Fuzz(func(t *testing.T, line1, line2 string, decoding uint8, newID string) {
		d := decodings[int(decoding)%len(decodings)]
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		h := http.Header{"Set-Cookie": {line1, line2}}
		action, value, err := Source{Decoding: d}.ResponseCookie(h, "PHPSESSID", now)
		switch {
		case action == CookieSet && err == nil && (value == "" || Validate(value) != nil):
			t.Fatalf("set to %q, which is not a valid ID", value)
		case action != CookieSet && (value != "" || err != nil):
			t.Fatalf("%v with value %q, err %v", action, value, err)
		}

		id := validIDFrom(newID)
		h["Set-Cookie"] = append(h["Set-Cookie"], "PHPSESSID="+d.encode(id)+"; path=/; HttpOnly")
		if action, value, err := (Source{Decoding: d}).ResponseCookie(h, "PHPSESSID", now); action != CookieSet || value != id || err != nil {
			t.Fatalf("%v: last Set-Cookie sets %q: read %v %q %v", d, id, action, value, err)
		}
	})
}

// FuzzParseSetCookie holds parseSetCookie to http.ParseSetCookie: it
// accepts the same fields for the name, and reads the same value, Max-Age
// and Expires from them.
func FuzzParseSetCookie(f *testing.F) {
	for _, seed := range []string{
		"PHPSESSID=v9l4b0r2k1mv3qf8tmd6s7j2a5; expires=Mon, 30-Nov-2099 11:49:48 GMT; Max-Age=7200; path=/; HttpOnly; SameSite=Lax",
		"PHPSESSID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0",
		`PHPSESSID="q"; Expires=Wed, 21 Oct 2099 07:28:00 GMT; expires=junk`,
		" PHPSESSID = x ;MAX-AGE=012; max-age=-5;;",
		"PHPSESSID=a\\b; Max-Age=+3",
		"PHPSESSID=x; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=1x; expireſ=Thu, 01 Jan 1970 00:00:00 GMT",
		"\vPHPSESSID=x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		const name = "PHPSESSID"
		got, ok := parseSetCookie(line, name)
		want, err := http.ParseSetCookie(line)
		if wantOK := err == nil && want.Name == name; ok != wantOK {
			t.Fatalf("parseSetCookie(%q) accepts it: %v, ParseSetCookie: %v (%v)", line, ok, wantOK, err)
		}
		if !ok {
			return
		}
		if got.value != want.Value || got.maxAge != want.MaxAge || !got.expires().Equal(want.Expires) || got.expires().IsZero() != want.Expires.IsZero() {
			t.Fatalf("parseSetCookie(%q) = %q, Max-Age %d, Expires %v; ParseSetCookie: %q, %d, %v",
				line, got.value, got.maxAge, got.expires(), want.Value, want.MaxAge, want.Expires)
		}
	})
}

// FuzzKeyPattern keys fuzzed IDs by fuzzed patterns: a key is never empty
// for a non-empty ID and is always part of it.
func FuzzKeyPattern(f *testing.F) {
	f.Add(`^(?:[^-]*-){5}(.+)$`, "a-b-c-d-e-HASH")
	f.Add(`(x*)`, "yyy")
	f.Add(`^(?P<k>[a-z]+)`, "abc123")
	f.Fuzz(func(t *testing.T, expr, id string) {
		if len(expr) > 200 {
			return // regexp size, not keying, would be under test
		}
		p, err := CompileKeyPattern(expr)
		if err != nil {
			return
		}
		key := p.Key(id)
		if id != "" && key == "" {
			t.Fatalf("%q keys %q as empty", expr, id)
		}
		if !strings.Contains(id, key) {
			t.Fatalf("%q keys %q as %q, not a part of it", expr, id, key)
		}
	})
}

// FuzzMint mints IDs for fuzzed settings: every ID a minter makes has its
// length, passes Validate, and survives the trip into a request's Cookie
// header and back out of a Set-Cookie under every decoding.
func FuzzMint(f *testing.F) {
	f.Add("php", 0, 0)
	f.Add("php", 22, 6)
	f.Add("hex", 256, 0)
	f.Add("base64url", 23, 0)
	f.Fuzz(func(t *testing.T, format string, length, bits int) {
		m, err := NewMinter(format, length, bits)
		if err != nil {
			return
		}
		id := m.Mint()
		if length != 0 && len(id) != length {
			t.Fatalf("%s/%d minted %d characters", format, length, len(id))
		}
		if err := Validate(id); err != nil {
			t.Fatalf("%s/%d minted an invalid ID: %v", format, length, err)
		}
		for _, d := range decodings {
			h := http.Header{}
			d.SetCookie(h, "PHPSESSID", id)
			if got, _ := d.Cookie(h, "PHPSESSID"); got != id {
				t.Fatalf("%v: minted %q read back as %q", d, id, got)
			}
			h = http.Header{"Set-Cookie": {(&http.Cookie{Name: "PHPSESSID", Value: id, Path: "/"}).String()}}
			if _, got, err := (Source{Decoding: d}).ResponseCookie(h, "PHPSESSID", time.Now()); got != id || err != nil {
				t.Fatalf("%v: minted %q set by the proxy read back as %q, %v", d, id, got, err)
			}
		}
	})
}
