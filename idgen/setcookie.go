package idgen

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// CookieAction is what a response does to one cookie.
type CookieAction uint8

const (
	// CookieUntouched: the response has no usable Set-Cookie for the name.
	CookieUntouched CookieAction = iota
	// CookieSet: the response gives the cookie a value.
	CookieSet
	// CookieDeleted: the response removes the cookie (a logout).
	CookieDeleted
)

func (a CookieAction) String() string {
	switch a {
	case CookieSet:
		return "set"
	case CookieDeleted:
		return "deleted"
	}
	return "untouched"
}

// ResponseCookie says what the response header h does to the cookie name,
// as a browser would apply it at time now.
//
// Every Set-Cookie field is read as http.ParseSetCookie reads it (see
// parseSetCookie); fields a browser would reject are skipped, and when
// several set the name the last one wins, as browsers apply them in order. Path and Domain are not compared: a
// backend that sets its session cookie for several paths at once is not
// told apart.
//
// The cookie counts as deleted when the value is empty or the backend will
// read it as empty, when Max-Age is
// zero or negative, or, without Max-Age (which takes precedence, RFC 6265
// §5.3), when Expires is not after now. PHP's logout sends
// "PHPSESSID=deleted; expires=Thu, 01-Jan-1970 00:00:01 GMT; Max-Age=0".
//
// For CookieSet, value is the session ID the cookie carries: its value
// decoded as the backend will read it when the browser sends it back (PHP's
// session cookie is URL-encoded), and decrypted when s has a cipher, so that
// a backend that encrypts the same ID afresh on every response (Laravel)
// sets the same ID. err is set, with value empty, when that is not
// acceptable as a queue key (see Validate) or does not decrypt, and the
// caller should treat the response as setting an ID it does not track.
func (s Source) ResponseCookie(h http.Header, name string, now time.Time) (action CookieAction, value string, err error) {
	var last setCookie
	found := false
	for _, line := range h["Set-Cookie"] {
		if c, ok := parseSetCookie(line, name); ok {
			last, found = c, true
		}
	}
	switch {
	case !found:
		return CookieUntouched, "", nil
	case last.value == "",
		last.maxAge < 0,
		last.maxAge == 0 && !last.expires().IsZero() && !last.expires().After(now):
		return CookieDeleted, "", nil
	}
	value = s.Decoding.value(last.value)
	if s.Cipher != nil {
		id, err := decryptID(s.Cipher, name, value)
		if err == nil && id == "" {
			err = errors.New("decrypts to an empty session ID")
		}
		if err != nil {
			return CookieSet, "", fmt.Errorf("Set-Cookie %s: %w", name, err)
		}
		return CookieSet, id, nil
	}
	if value == "" {
		// The backend will read the cookie as empty, which is no session
		// ("CGISESSID=&x" under CGI.pm): a deletion, not an empty ID that
		// every such response would share.
		return CookieDeleted, "", nil
	}
	if err := Validate(value); err != nil {
		return CookieSet, "", fmt.Errorf("Set-Cookie %s: %w", name, err)
	}
	return CookieSet, value, nil
}

// setCookie is what ResponseCookie needs of a Set-Cookie field: the
// fields of http.Cookie that ParseSetCookie would fill, but Expires only
// read when asked, since Max-Age, which PHP and Laravel send with it,
// takes precedence.
type setCookie struct {
	value  string
	maxAge int
	// rawExpires is the last Expires attribute's value, if hasExpires.
	rawExpires string
	hasExpires bool
}

// expires is http.Cookie's Expires: the last Expires attribute, or zero
// when that does not parse.
func (c setCookie) expires() time.Time {
	if !c.hasExpires {
		return time.Time{}
	}
	// Of the two layouts ParseSetCookie tries in turn, at most one can
	// match; trying the likelier first spares the other's error.
	layouts := [2]string{time.RFC1123, "Mon, 02-Jan-2006 15:04:05 MST"}
	if len(c.rawExpires) > 7 && c.rawExpires[7] == '-' {
		layouts[0], layouts[1] = layouts[1], layouts[0]
	}
	for _, layout := range layouts {
		if t, err := time.Parse(layout, c.rawExpires); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// parseSetCookie reads the Set-Cookie field line for the cookie name (a
// valid cookie name) as http.ParseSetCookie does, and reports whether it
// would accept it and find that name. ParseSetCookie made about ten
// allocations a field, for a cookie that PHP (with session.cookie_lifetime)
// and Laravel set on every response; this makes none, and its Expires
// none while Max-Age is set. FuzzParseSetCookie holds the two to the same
// results.
func parseSetCookie(line, name string) (c setCookie, ok bool) {
	first, attributes, _ := strings.Cut(textproto.TrimString(line), ";")
	cookieName, value, hasValue := strings.Cut(textproto.TrimString(first), "=")
	if !hasValue || textproto.TrimString(cookieName) != name {
		return setCookie{}, false
	}
	if value, ok = CookieValue(value); !ok {
		return setCookie{}, false
	}
	c.value = value
	for attributes != "" {
		var attribute string
		attribute, attributes, _ = strings.Cut(attributes, ";")
		attr, val, _ := strings.Cut(textproto.TrimString(attribute), "=")
		if !validCookieValue(val) {
			continue
		}
		switch {
		case asciiEqualFold(attr, "max-age"):
			secs, err := strconv.Atoi(val)
			if err != nil || secs != 0 && val[0] == '0' {
				continue
			}
			if secs <= 0 {
				secs = -1
			}
			c.maxAge = secs
		case asciiEqualFold(attr, "expires"):
			c.rawExpires, c.hasExpires = val, true
		}
	}
	return c, true
}

// CookieValue reads a cookie's raw value as net/http does, in a Cookie
// header or a Set-Cookie field: without its surrounding double quotes, and
// only if every byte is one net/http accepts (ok false otherwise).
func CookieValue(raw string) (value string, ok bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	return raw, validCookieValue(raw)
}

// validCookieValue reports whether net/http accepts v, unquoted, as a
// cookie's value or an attribute's.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// asciiEqualFold is strings.EqualFold for ASCII only, as net/http compares
// attribute names: "ſ" (U+017F) does not spell an "s".
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
