package idgen

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// HashLength is the length of a short hash in hex characters: 48 bits, plenty
// to tell the sessions in one log apart, far too few to recover an ID.
const HashLength = 12

// hashKey is drawn once per process, so a hash identifies a session within
// this process's logs and metrics and means nothing to anyone else.
var hashKey = func() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	return key
}()

var macs = sync.Pool{New: func() any { return hmac.New(sha256.New, hashKey) }}

// Hash returns the keyed short hash of a session ID (HMAC-SHA256 under a
// per-process random key, first 12 hex characters). It is the only form in
// which an ID may appear in a log line, an error, a metric or a placeholder.
func Hash(id string) string {
	mac := macs.Get().(hash.Hash)
	mac.Reset()
	_, _ = mac.Write([]byte(id))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	macs.Put(mac)
	var out [HashLength]byte
	hex.Encode(out[:], sum[:HashLength/2])
	return string(out[:])
}
