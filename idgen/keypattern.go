package idgen

import (
	"fmt"
	"regexp"
)

// KeyPattern derives a queue key from a session ID whose format carries
// more than the session's identity, such as a Zend Server Session
// Clustering ID, Master_Server-TCP_Port-Backup_Server-TCP_Port-Version-HASH,
// where only HASH names the session and the rest changes when the cluster
// moves the session to another node. Assuming the first five fields hold
// no '-', this pattern keys such IDs by HASH:
//
//	^(?:[^-]*-){5}(.+)$
//
// A KeyPattern is safe for concurrent use. The zero KeyPattern keys every
// ID by itself, so the caller can call Key whether or not a pattern is
// configured.
type KeyPattern struct {
	re *regexp.Regexp
}

// CompileKeyPattern compiles expr, which must have exactly one capturing
// group (named or not; (?:...) groups do not count): the part it captures
// is the key. The pattern is not anchored for you: add ^ and $ when the
// whole ID must match.
func CompileKeyPattern(expr string) (KeyPattern, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return KeyPattern{}, err
	}
	if n := re.NumSubexp(); n != 1 {
		return KeyPattern{}, fmt.Errorf("%q has %d capturing groups, want exactly 1 (use (?:...) for the others)", expr, n)
	}
	return KeyPattern{re: re}, nil
}

// Key returns the part of id that the pattern captures. When the pattern
// does not match, or captures nothing, the whole ID is the key: such an ID
// still names one session (say a plain PHPSESSID left from before Session
// Clustering was turned on), and queueing it on itself keeps it serialized,
// where passing it through would silently drop the guarantee. An empty key
// is never returned for a non-empty id, as it would put every such session
// in one queue.
func (p KeyPattern) Key(id string) string {
	if p.re == nil {
		return id
	}
	loc := p.re.FindStringSubmatchIndex(id)
	if loc == nil || loc[2] < 0 || loc[2] == loc[3] {
		return id
	}
	return id[loc[2]:loc[3]]
}

// String returns the expression the pattern was compiled from; "" for the
// zero KeyPattern.
func (p KeyPattern) String() string {
	if p.re == nil {
		return ""
	}
	return p.re.String()
}
