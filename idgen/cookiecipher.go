package idgen

import (
	"errors"
	"fmt"
	"net/http"
)

// MaxEncryptedLength is the longest encrypted session cookie value that is
// decrypted. Browsers keep cookies of at most 4096 bytes, name included, and
// Laravel's is about 350; the bound is checked before any decoding, so that
// a hostile cookie costs a bounded amount of work and memory.
const MaxEncryptedLength = 4096

// ErrUndecryptable is why an encrypted session cookie is refused: it is not
// a value the backend would read as a session (forged, truncated, made with
// another key, or for another cookie). The errors that wrap it name the
// check that failed, never the value or a key.
var ErrUndecryptable = errors.New("session cookie cannot be decrypted")

// errTooLongToDecrypt refuses a value over MaxEncryptedLength; made once,
// as it may be answered to every request of a flood.
var errTooLongToDecrypt = fmt.Errorf("%w: longer than %d bytes", ErrUndecryptable, MaxEncryptedLength)

// CookieCipher reads the session ID out of a backend's encrypted session
// cookie, and writes one, for backends that encrypt the cookie rather than
// send the bare ID (Laravel). Implementations are safe for concurrent use.
type CookieCipher interface {
	// Decrypt returns the session ID that the backend reads from the
	// cookie named cookie with the value value (as the backend's decoding
	// reads it). Its errors wrap ErrUndecryptable.
	Decrypt(cookie, value string) (id string, err error)
	// Encrypt returns a value for the cookie that the backend reads as
	// id, encrypted afresh as the backend would write it.
	Encrypt(cookie, id string) (value string, err error)
}

// decryptID reads the session ID out of an encrypted cookie value and
// checks it as a queue key. An empty ID is returned as "", nil: the backend
// reads the cookie as carrying no session.
func decryptID(c CookieCipher, cookie, value string) (string, error) {
	if len(value) > MaxEncryptedLength {
		return "", errTooLongToDecrypt
	}
	id, err := c.Decrypt(cookie, value)
	if err != nil {
		return "", err
	}
	if err := Validate(id); err != nil {
		return "", fmt.Errorf("decrypted %w", err)
	}
	return id, nil
}

// checkCookie checks a cookie's value as a queue key, after decrypting it
// when s has a cipher. A value that decrypts to an empty ID carries no
// session, as for the backend.
func (s Source) checkCookie(name, value string) (Found, bool, error) {
	if s.Cipher == nil {
		return check(value, "cookie", name)
	}
	found := Found{Kind: "cookie", Name: name}
	id, err := decryptID(s.Cipher, name, value)
	if err != nil {
		return found, true, fmt.Errorf("%s: %w", found.Where(), err)
	}
	if id == "" {
		return Found{}, false, nil
	}
	found.ID = id
	return found, true, nil
}

// SetCookie makes the request header h carry the session ID id in the
// cookie name, as the backend reads it: encrypted afresh when s has a
// cipher, then encoded by s's decoding (see Decoding.SetCookie).
func (s Source) SetCookie(h http.Header, name, id string) error {
	value := id
	if s.Cipher != nil {
		var err error
		if value, err = s.Cipher.Encrypt(name, id); err != nil {
			return fmt.Errorf("cookie %s: encrypting: %w", name, err)
		}
	}
	s.Decoding.SetCookie(h, name, value)
	return nil
}
