package idgen

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Laravel reads and writes cookies as Laravel's EncryptCookies middleware
// does (Illuminate\Encryption\Encrypter, Illuminate\Cookie\CookieValuePrefix,
// Laravel 8 and later): the value is base64 of a JSON object {iv, value,
// mac, tag}; value is the base64 AES ciphertext of
// HMAC-SHA1(cookie name + "v2", key) in hex, "|", and the session ID. With
// AES-128/256-CBC, mac is HMAC-SHA256(key, iv . value) in hex and is checked,
// in constant time, before anything is decrypted; with AES-128/256-GCM the
// tag authenticates. Keys are tried in order, as Laravel tries
// APP_PREVIOUS_KEYS after APP_KEY, and the cookie-value prefix may be made
// with any of them.
//
// A cookie is read as leniently as PHP reads it (base64_decode skips
// characters outside the alphabet, json_decode takes any key order,
// white space and escapes), since a client could otherwise re-encode its
// own cookie to get its requests past the queue; the CBC/GCM mode is the
// payload's, which the key holder alone can make.
type Laravel struct {
	keys []*laravelKey
	// gcm is whether Encrypt uses GCM: the mode of the last cookie that
	// decrypted, since only the backend can make one, so that a rewritten
	// cookie is in the mode the backend is configured with. CBC, Laravel's
	// default, until then.
	gcm atomic.Bool
}

type laravelKey struct {
	size  int // bytes: 16 or 32
	block cipher.Block
	gcm   cipher.AEAD
	// macs pools keyed HMAC-SHA256s for payload MACs: Reset brings one
	// back to its keyed state, cheaper than keying one for every request.
	macs sync.Pool
	raw  []byte
	// prefixes caches the cookie-value prefix by cookie name; the names
	// are those of the configured session cookies, a handful.
	prefixes sync.Map
}

// keyedMAC is a pooled HMAC with room for its sum, which would otherwise
// escape to the heap through the hash.Hash interface.
type keyedMAC struct {
	hash.Hash
	sum [sha256.Size]byte
}

// laravelPrefixLength is the length of the cookie-value prefix: 40 hex
// digits of HMAC-SHA1 and "|".
const laravelPrefixLength = 2*sha1.Size + 1

// NewLaravel returns a Laravel cipher for the given keys, in Laravel's
// APP_KEY form: "base64:" and the base64 of the key, or the key itself; 16
// bytes (AES-128) or 32 (AES-256). The first encrypts; all decrypt. Errors
// name a key by its position, never its content.
func NewLaravel(keys []string) (*Laravel, error) {
	if len(keys) == 0 {
		return nil, errors.New("needs a key")
	}
	l := new(Laravel)
	for i, encoded := range keys {
		raw, err := parseLaravelKey(encoded)
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", i+1, err)
		}
		if i > 0 && len(raw) != l.keys[0].size {
			return nil, fmt.Errorf("key %d: %d bytes, but key 1 is %d: Laravel uses one cipher for all keys", i+1, len(raw), l.keys[0].size)
		}
		l.keys = append(l.keys, newLaravelKey(raw))
	}
	return l, nil
}

func parseLaravelKey(encoded string) ([]byte, error) {
	if encoded == "" {
		return nil, errors.New("empty (is the placeholder's variable or file set?)")
	}
	raw := []byte(encoded)
	if b64, ok := strings.CutPrefix(encoded, "base64:"); ok {
		raw, _ = phpBase64Decode(nil, b64, false)
	}
	if len(raw) != 16 && len(raw) != 32 {
		return nil, fmt.Errorf("%d bytes; Laravel's keys are 16 (AES-128) or 32 (AES-256), written as base64:<base64> like APP_KEY", len(raw))
	}
	return raw, nil
}

func newLaravelKey(raw []byte) *laravelKey {
	block, _ := aes.NewCipher(raw) // 16 or 32 bytes, checked
	gcm, _ := cipher.NewGCM(block)
	k := &laravelKey{size: len(raw), block: block, gcm: gcm, raw: raw}
	k.macs.New = func() any { return &keyedMAC{Hash: hmac.New(sha256.New, raw)} }
	return k
}

// cookiePrefix returns the cookie-value prefix of cookie under k.
func (k *laravelKey) cookiePrefix(cookie string) []byte {
	if prefix, ok := k.prefixes.Load(cookie); ok {
		return prefix.([]byte)
	}
	mac := hmac.New(sha1.New, k.raw)
	mac.Write([]byte(cookie + "v2"))
	prefix := append(hex.AppendEncode(make([]byte, 0, laravelPrefixLength), mac.Sum(nil)), '|')
	k.prefixes.Store(cookie, prefix)
	return prefix
}

// payloadMAC appends the hex HMAC-SHA256 of iv . value under k to dst.
func (k *laravelKey) payloadMAC(dst []byte, iv, value []byte) []byte {
	mac := k.macs.Get().(*keyedMAC)
	mac.Reset()
	mac.Write(iv)
	mac.Write(value)
	dst = hex.AppendEncode(dst, mac.Sum(mac.sum[:0]))
	k.macs.Put(mac)
	return dst
}

// Decrypt implements CookieCipher.
func (l *Laravel) Decrypt(cookie, value string) (string, error) {
	if len(value) > MaxEncryptedLength {
		return "", errTooLongToDecrypt
	}
	raw, _ := phpBase64Decode(make([]byte, 0, len(value)*3/4+3), value, false)
	p, err := parseLaravelPayload(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	var plain []byte
	if p.gcm {
		plain, err = l.openGCM(p)
	} else {
		plain, err = l.openCBC(p)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	if len(plain) < laravelPrefixLength || !l.validPrefix(cookie, plain[:laravelPrefixLength]) {
		// Laravel reads a cookie without the prefix of its own name as no
		// cookie: it stops a value encrypted for one cookie from being
		// replayed as another.
		return "", fmt.Errorf("%w: the value is not prefixed for cookie %s", ErrUndecryptable, cookie)
	}
	if l.gcm.Load() != p.gcm {
		l.gcm.Store(p.gcm) // rarely: no write to shared memory per request
	}
	return string(plain[laravelPrefixLength:]), nil
}

// validPrefix says whether prefix is cookie's prefix under one of the keys,
// as Laravel 11 checks it (CookieValuePrefix::validate); Laravel 8 knows one
// key only.
func (l *Laravel) validPrefix(cookie string, prefix []byte) bool {
	for _, k := range l.keys {
		if subtle.ConstantTimeCompare(k.cookiePrefix(cookie), prefix) == 1 {
			return true
		}
	}
	return false
}

// openCBC checks the MAC, with each key in turn, and decrypts with the key
// it verifies under.
func (l *Laravel) openCBC(p laravelPayload) ([]byte, error) {
	// Room for the 18 bytes that 24 base64 characters can hold.
	var ivBuf [aes.BlockSize + 2]byte
	iv, ok := phpBase64Decode(ivBuf[:0], p.iv, true)
	if !ok || len(iv) != aes.BlockSize {
		return nil, errors.New("the IV is not 16 bytes of base64")
	}
	var key *laravelKey
	var want [2 * sha256.Size]byte
	for _, k := range l.keys {
		if subtle.ConstantTimeCompare(k.payloadMAC(want[:0], p.iv, p.value), p.mac) == 1 {
			key = k
			break
		}
	}
	if key == nil {
		return nil, errors.New("the MAC does not verify under any key")
	}
	ct, _ := phpBase64Decode(nil, p.value, false)
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errors.New("the ciphertext is not whole AES blocks")
	}
	decryptCBC(key.block, iv, ct)
	// The MAC is verified: a padding error reveals nothing to a forger.
	pad := int(ct[len(ct)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, errors.New("bad padding")
	}
	for _, c := range ct[len(ct)-pad:] {
		if int(c) != pad {
			return nil, errors.New("bad padding")
		}
	}
	return ct[:len(ct)-pad], nil
}

// decryptCBC decrypts ct in place. It is cipher.NewCBCDecrypter's work
// without its allocation of a copy of the expanded key, which would
// dominate the cost of a cookie's few blocks.
func decryptCBC(block cipher.Block, iv, ct []byte) {
	var prev, next [aes.BlockSize]byte
	copy(prev[:], iv)
	for len(ct) > 0 {
		b := ct[:aes.BlockSize]
		copy(next[:], b)
		block.Decrypt(b, b)
		subtle.XORBytes(b, b, prev[:])
		prev = next
		ct = ct[aes.BlockSize:]
	}
}

// openGCM decrypts with each key in turn, as Laravel does.
func (l *Laravel) openGCM(p laravelPayload) ([]byte, error) {
	var ivBuf [12]byte
	iv, ok := phpBase64Decode(ivBuf[:0], p.iv, true)
	if !ok || len(iv) != len(ivBuf) {
		return nil, errors.New("the IV is not 12 bytes of base64")
	}
	sealed, _ := phpBase64Decode(nil, p.value, false)
	valueEnd := len(sealed)
	if sealed, _ = phpBase64Decode(sealed, p.tag, false); len(sealed)-valueEnd != 16 {
		return nil, errors.New("the tag is not 16 bytes")
	}
	for _, k := range l.keys {
		// Open overwrites its destination even when it fails, so each key
		// gets its own.
		if plain, err := k.gcm.Open(nil, iv, sealed, nil); err == nil {
			return plain, nil
		}
	}
	return nil, errors.New("the tag does not verify under any key")
}

// Encrypt implements CookieCipher: the first key, a fresh random IV, and
// the mode of the backend's cookies.
func (l *Laravel) Encrypt(cookie, id string) (string, error) {
	k := l.keys[0]
	plain := append(append(make([]byte, 0, laravelPrefixLength+len(id)+aes.BlockSize), k.cookiePrefix(cookie)...), id...)
	var payload struct {
		IV    string `json:"iv"`
		Value string `json:"value"`
		MAC   string `json:"mac"`
		Tag   string `json:"tag"`
	}
	if l.gcm.Load() {
		iv := make([]byte, k.gcm.NonceSize())
		rand.Read(iv)
		sealed := k.gcm.Seal(nil, iv, plain, nil)
		tagAt := len(sealed) - k.gcm.Overhead()
		payload.IV = base64.StdEncoding.EncodeToString(iv)
		payload.Value = base64.StdEncoding.EncodeToString(sealed[:tagAt])
		payload.Tag = base64.StdEncoding.EncodeToString(sealed[tagAt:])
	} else {
		iv := make([]byte, aes.BlockSize)
		rand.Read(iv)
		pad := aes.BlockSize - len(plain)%aes.BlockSize
		plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
		cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(plain, plain)
		payload.IV = base64.StdEncoding.EncodeToString(iv)
		payload.Value = base64.StdEncoding.EncodeToString(plain)
		payload.MAC = string(k.payloadMAC(nil, []byte(payload.IV), []byte(payload.Value)))
	}
	// Base64 has no characters that encoding/json escapes.
	encoded, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(encoded), nil
}

// laravelPayload holds the fields of a decoded payload, as sub-slices of
// its JSON where they needed no unescaping.
type laravelPayload struct {
	iv, value, mac, tag []byte
	gcm                 bool
}

// parseLaravelPayload reads the JSON object as Laravel's Encrypter does
// (validPayload, ensureTagIsValid): iv, value and mac must be set, tag
// empty in PHP's sense for CBC or set for GCM. Laravel's own encoding is
// read without copying; anything else goes through encoding/json, whose
// map decoding, like PHP's json_decode, matches keys exactly and lets the
// last of repeated keys win.
func parseLaravelPayload(raw []byte) (laravelPayload, error) {
	if p, ok := parseCanonicalPayload(raw); ok {
		return p, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return laravelPayload{}, errors.New("not base64 of a JSON object")
	}
	var p laravelPayload
	var ok bool
	if p.iv, ok = jsonString(fields["iv"]); !ok {
		return p, errors.New("no iv")
	}
	if p.value, ok = jsonString(fields["value"]); !ok {
		return p, errors.New("no value")
	}
	tag, hasTag := fields["tag"]
	if hasTag && !phpEmpty(tag) {
		if p.tag, ok = jsonString(tag); !ok {
			return p, errors.New("the tag is not a string")
		}
		p.gcm = true
	}
	mac, hasMAC := fields["mac"]
	if !hasMAC || string(mac) == "null" {
		return p, errors.New("no mac")
	}
	if !p.gcm {
		if p.mac, ok = jsonString(mac); !ok {
			return p, errors.New("the mac is not a string")
		}
	}
	return p, nil
}

// parseCanonicalPayload reads the payload as Laravel writes it:
// {"iv":"…","value":"…","mac":"…","tag":"…"}, no white space, no escapes.
// It takes a string with control characters, which JSON forbids: such a
// payload fails the MAC, as Laravel's own never have them.
func parseCanonicalPayload(raw []byte) (p laravelPayload, ok bool) {
	rest := raw
	field := func(name string) []byte {
		if !ok {
			return nil
		}
		if ok = bytes.HasPrefix(rest, []byte(name)); !ok {
			return nil
		}
		rest = rest[len(name):]
		end := bytes.IndexByte(rest, '"')
		if ok = end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0; !ok {
			return nil
		}
		s := rest[:end]
		rest = rest[end+1:]
		return s
	}
	ok = true
	p.iv = field(`{"iv":"`)
	p.value = field(`,"value":"`)
	p.mac = field(`,"mac":"`)
	p.tag = field(`,"tag":"`)
	if !ok || string(rest) != "}" {
		return laravelPayload{}, false
	}
	// "0" is empty to PHP, like "".
	p.gcm = len(p.tag) > 0 && string(p.tag) != "0"
	return p, true
}

// jsonString returns the JSON string raw holds, unescaped.
func jsonString(raw json.RawMessage) ([]byte, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}

// phpEmpty is PHP's empty() of a decoded JSON value: null, false, 0, "",
// "0", [] and {} (an empty array, with json_decode's assoc) are empty.
func phpEmpty(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == "" || v == "0"
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// phpBase64Decode appends to dst the bytes that PHP's base64_decode reads
// from s. Non-strict, it skips every character outside the alphabet ("="
// included) and drops a trailing partial byte. Strict, it skips white
// space only, refuses other characters, data after "=", a lone trailing
// character and wrong padding; ok is false when it refuses.
func phpBase64Decode[T string | []byte](dst []byte, s T, strict bool) (out []byte, ok bool) {
	// Padded base64, which is what PHP writes, decodes to the same bytes
	// with Go's faster decoder, strict or not.
	if len(s)%4 == 0 {
		n := len(dst)
		dst = slices.Grow(dst, len(s)/4*3)[:n+len(s)/4*3]
		if m, err := base64.StdEncoding.Decode(dst[n:], []byte(s)); err == nil {
			return dst[:n+m], true
		}
		dst = dst[:n]
	}
	var acc uint32
	var n, padding int
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			padding++
			continue
		}
		v := base64Reverse[c]
		if v < 0 {
			if strict && v == base64Invalid {
				return dst, false
			}
			continue
		}
		if strict && padding > 0 {
			return dst, false
		}
		acc = acc<<6 | uint32(v)
		n++
		if n%4 == 0 {
			dst = append(dst, byte(acc>>16), byte(acc>>8), byte(acc))
			acc = 0
		}
	}
	switch n % 4 {
	case 1:
		if strict {
			return dst, false
		}
	case 2:
		dst = append(dst, byte(acc>>4))
	case 3:
		dst = append(dst, byte(acc>>10), byte(acc>>2))
	}
	if strict && padding > 0 && (padding > 2 || (n+padding)%4 != 0) {
		return dst, false
	}
	return dst, true
}

const (
	base64Space   = -1 // skipped even by strict decoding
	base64Invalid = -2
)

var base64Reverse = func() (table [256]int8) {
	for i := range table {
		table[i] = base64Invalid
	}
	for _, c := range "\t\n\r " {
		table[c] = base64Space
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alphabet); i++ {
		table[alphabet[i]] = int8(i)
	}
	return table
}()
