// Package idgen holds the rules for session IDs: where a request carries
// one, which values are acceptable as queue keys, and how an ID is shown in
// logs without revealing it.
package idgen

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
)

// MaxLength is the longest session ID that is queued. Real IDs are far
// shorter (PHP allows 256 at most); longer values are junk or abuse and must
// not create queue state.
const MaxLength = 256

// Reasons an ID is refused. They name the problem, never the value.
var (
	ErrTooLong  = fmt.Errorf("session ID longer than %d bytes", MaxLength)
	ErrBadChars = errors.New("session ID has characters outside [A-Za-z0-9,-._~%+/=]")
)

// Validate says whether id is acceptable as a queue key.
func Validate(id string) error {
	if len(id) > MaxLength {
		return ErrTooLong
	}
	for i := 0; i < len(id); i++ {
		if !idChar[id[i]] {
			return ErrBadChars
		}
	}
	return nil
}

var idChar = func() (table [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		table[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		table[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		table[c] = true
	}
	for _, c := range ",-._~%+/=" {
		table[c] = true
	}
	return table
}()

// Source says where a request's session ID is looked for. Cookies are tried
// first, in the order given, then query parameters, then headers, the order
// in which PHP itself prefers them. Cookies and query parameters are read
// by the backend's rules (Decoding), so that the ID queued is the ID the
// backend will use; header values are taken as they are.
type Source struct {
	Cookies  []string
	Query    []string
	Headers  []string
	Decoding Decoding
	// Cipher, when set, reads the ID out of an encrypted cookie value.
	Cipher CookieCipher
}

// Found is a session ID read from a request.
type Found struct {
	// ID is the raw value; it must never be logged (see Hash).
	ID string
	// Kind is "cookie", "query" or "header"; Name is the cookie, parameter
	// or header field it came from.
	Kind, Name string
}

// Where names the place the ID came from, e.g. "cookie PHPSESSID".
func (f Found) Where() string { return f.Kind + " " + f.Name }

// Extract returns the request's session ID. ok is false when the request
// carries none (an empty value counts as none: PHP starts a new session for
// it). err is set, with ok true, when the request carries a value that is
// not acceptable as a key, or a cookie that does not decrypt (with Cipher,
// the decrypted ID is checked, not the longer cookie); the caller passes
// such requests through.
func (s Source) Extract(r *http.Request) (found Found, ok bool, err error) {
	for _, name := range s.Cookies {
		if v, present := s.Decoding.Cookie(r.Header, name); present && v != "" {
			return s.checkCookie(name, v)
		}
	}
	if len(s.Query) > 0 && r.URL.RawQuery != "" {
		for _, name := range s.Query {
			if v, present := s.Decoding.Query(r.URL.RawQuery, name); present && v != "" {
				return check(v, "query", name)
			}
		}
	}
	for _, name := range s.Headers {
		if v := r.Header.Get(name); v != "" {
			return check(v, "header", textproto.CanonicalMIMEHeaderKey(name))
		}
	}
	return Found{}, false, nil
}

func check(id, kind, name string) (Found, bool, error) {
	found := Found{Kind: kind, Name: name}
	if err := Validate(id); err != nil {
		return found, true, fmt.Errorf("%s: %w", found.Where(), err)
	}
	found.ID = id
	return found, true, nil
}
