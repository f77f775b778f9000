package idgen

import (
	"errors"
	"fmt"
	"net/http"
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
// Every Set-Cookie field is read with http.ParseSetCookie; fields a browser
// would reject are skipped, and when several set the name the last one wins,
// as browsers apply them in order. Path and Domain are not compared: a
// backend that sets its session cookie for several paths at once is not
// told apart.
//
// The cookie counts as deleted when the value is empty, when Max-Age is
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
	var last *http.Cookie
	for _, line := range h["Set-Cookie"] {
		// Most responses set other cookies too; skip them before paying
		// for a full parse.
		lineName, _, hasValue := strings.Cut(line, "=")
		if !hasValue || strings.TrimSpace(lineName) != name {
			continue
		}
		if c, parseErr := http.ParseSetCookie(line); parseErr == nil {
			last = c
		}
	}
	switch {
	case last == nil:
		return CookieUntouched, "", nil
	case last.Value == "",
		last.MaxAge < 0,
		last.MaxAge == 0 && !last.Expires.IsZero() && !last.Expires.After(now):
		return CookieDeleted, "", nil
	}
	value = s.Decoding.value(last.Value)
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
	if err := Validate(value); err != nil {
		return CookieSet, "", fmt.Errorf("Set-Cookie %s: %w", name, err)
	}
	return CookieSet, value, nil
}
