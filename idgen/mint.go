package idgen

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// Formats a Minter can produce, as named by the `mint` directive.
const (
	FormatPHP       = "php"
	FormatHex       = "hex"
	FormatBase64URL = "base64url"
)

// PHP's session ID settings: the bounds php-src enforces on session.sid_length
// and session.sid_bits_per_character, and the defaults it uses (PHP 7.1+)
// when php.ini leaves them unset.
const (
	phpMinLength     = 22
	phpMaxLength     = 256
	phpDefaultLength = 32
	phpDefaultBits   = 4
)

// defaultHexLength is the length of a CGI::Session ID (an MD5 in hex).
const defaultHexLength = 32

// defaultBase64URLLength is 22 characters, 16 random bytes: the smallest
// unpadded base64url string that carries 128 bits.
const defaultBase64URLLength = 22

// minStrengthBits is the least randomness a hex or base64url ID minted here
// carries. php follows PHP's own bounds instead (22 characters of 4 bits is
// 88 bits), since that format promises what the backend would make itself.
const minStrengthBits = 128

// phpAlphabet is php-src's hexconvtab (ext/session/session.c). PHP takes the
// first 2^bits characters for sid_bits_per_character = bits: 16 gives
// 0-9a-f, 32 gives 0-9a-v, 64 gives 0-9a-zA-Z plus ',' and '-'.
const phpAlphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-"

// Minter makes new session IDs from crypto/rand in one backend's format.
// Every ID it makes passes Validate. A Minter is a small value, safe for
// concurrent use; the zero Minter is not usable, get one from NewMinter.
type Minter struct {
	// alphabet has a power-of-two length, so that one random byte masked
	// to its low bits picks each character with equal chance. It is empty
	// for base64url, which encodes random bytes instead.
	alphabet string
	length   int
}

// NewMinter returns a Minter for format ("php", "hex" or "base64url").
// length is the ID's length in characters, 0 for the format's default.
// bitsPerCharacter applies to php only (PHP's session.sid_bits_per_character:
// 4, 5 or 6), 0 for PHP's default of 4.
//
//   - php: length 22-256 (PHP's session.sid_length), default 32.
//   - hex: lowercase hex digits, as CGI::Session's MD5 IDs; length 32-256
//     (at least 128 bits), default 32.
//   - base64url: the unpadded base64url encoding of random bytes; length
//     22-256 (at least 128 bits), default 22. A length of 4n+1 is refused:
//     no byte string encodes to it.
//
// The errors name the offending setting, not the directive; the caller adds
// that.
func NewMinter(format string, length, bitsPerCharacter int) (Minter, error) {
	if bitsPerCharacter != 0 && format != FormatPHP {
		return Minter{}, fmt.Errorf("%s: bits per character applies to the php format only", format)
	}
	switch format {
	case FormatPHP:
		if length == 0 {
			length = phpDefaultLength
		}
		if bitsPerCharacter == 0 {
			bitsPerCharacter = phpDefaultBits
		}
		if length < phpMinLength || length > phpMaxLength {
			return Minter{}, fmt.Errorf("php: length must be between %d and %d, as PHP's session.sid_length, got %d",
				phpMinLength, phpMaxLength, length)
		}
		if bitsPerCharacter < 4 || bitsPerCharacter > 6 {
			return Minter{}, fmt.Errorf("php: bits per character must be 4, 5 or 6, as PHP's session.sid_bits_per_character, got %d",
				bitsPerCharacter)
		}
		return Minter{alphabet: phpAlphabet[:1<<bitsPerCharacter], length: length}, nil

	case FormatHex:
		if length == 0 {
			length = defaultHexLength
		}
		if minLen := minStrengthBits / 4; length < minLen || length > MaxLength {
			return Minter{}, fmt.Errorf("hex: length must be between %d (%d bits) and %d, got %d",
				minLen, minStrengthBits, MaxLength, length)
		}
		return Minter{alphabet: phpAlphabet[:16], length: length}, nil

	case FormatBase64URL:
		if length == 0 {
			length = defaultBase64URLLength
		}
		if minLen := base64.RawURLEncoding.EncodedLen(minStrengthBits / 8); length < minLen || length > MaxLength {
			return Minter{}, fmt.Errorf("base64url: length must be between %d (%d bits) and %d, got %d",
				minLen, minStrengthBits, MaxLength, length)
		}
		if length%4 == 1 {
			return Minter{}, fmt.Errorf("base64url: no unpadded base64url string is %d characters long; use %d or %d",
				length, length-1, length+1)
		}
		return Minter{length: length}, nil
	}
	return Minter{}, fmt.Errorf("unknown format %q: want %s, %s or %s", format, FormatPHP, FormatHex, FormatBase64URL)
}

// Mint returns a new session ID. Like PHP's php_session_create_id, it draws
// one random byte per character (for base64url, exactly the bytes that are
// encoded), so each character is uniform over the alphabet.
func (m Minter) Mint() string {
	// crypto/rand.Read never returns an error: it crashes the program
	// rather than hand out predictable bytes.
	var random, out [MaxLength]byte
	if m.alphabet == "" {
		n := m.length * 6 / 8 // the byte count whose encoding is m.length long
		_, _ = rand.Read(random[:n])
		base64.RawURLEncoding.Encode(out[:], random[:n])
		return string(out[:m.length])
	}
	_, _ = rand.Read(random[:m.length])
	mask := byte(len(m.alphabet) - 1)
	for i, b := range random[:m.length] {
		out[i] = m.alphabet[b&mask]
	}
	return string(out[:m.length])
}
