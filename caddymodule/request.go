package caddymodule

import (
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// queuedRequest is what a request that takes its session's turn needs
// beyond its stack, in one allocation: the turn, the session's name and the
// writers that watch the response.
type queuedRequest struct {
	held    heldTurn
	session sessionName
	wrapper caddyhttp.ResponseWriterWrapper
	writer  sessionWriter
	drain   drainingWriter
	// What the placeholders read: mode and result index modeValues and
	// resultValues, result is resultUnset until the wait has ended, fence
	// is 0 outside cluster mode. (Bytes, which keep the struct in a
	// size class of 384 bytes.)
	mode, result int8
	waitedMS     float64
	fence        uint64
}

// resultUnset is a queuedRequest's result while it waits.
const resultUnset = -1

// newQueuedRequest wraps w: the route writes to drain, which passes on to
// writer, which passes on to w.
func (h *Handler) newQueuedRequest(w http.ResponseWriter, sreq sessionRequest, mode int) *queuedRequest {
	q := &queuedRequest{mode: int8(mode), result: resultUnset}
	q.wrapper.ResponseWriter = w
	q.writer = sessionWriter{ResponseWriterWrapper: &q.wrapper, h: h, req: sreq}
	q.drain = drainingWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: &q.writer}, h: h, session: &q.session}
	return q
}

// placeholder is a caddy.ReplacerFunc for the placeholders of a queued
// request (see Handler). Values are looked up when something reads them,
// which most requests never do: setting the four of every request with
// Replacer.Set, a lock and a map insertion each, was an eighth of the
// handler's time. When two session_queue handlers serve one request, the
// first one's values are read, as the Replacer asks its providers in
// order.
func (q *queuedRequest) placeholder(key string) (any, bool) {
	switch key {
	case placeholderMode:
		return modeValues[q.mode], true
	case placeholderSession:
		return &q.session, true
	case placeholderWaitMS:
		return q.waitedMS, true
	case placeholderResult:
		if q.result != resultUnset {
			return resultValues[q.result], true
		}
	case placeholderFence:
		if q.fence != 0 {
			return q.fence, true
		}
	}
	return nil, false
}

// sessionName is a session's name in logs, errors and placeholders: the
// keyed hash of its queue key. Most requests are never logged, so the
// HMAC is computed only when something reads the name; it is safe to read
// from several goroutines (max_hold's timer logs it too).
type sessionName struct {
	key  string
	once sync.Once
	name string
}

func (s *sessionName) String() string {
	s.once.Do(func() { s.name = idgen.Hash(s.key) })
	return s.name
}

// modeValues and resultValues are modeNames and resultNames boxed once, so
// that setting a placeholder to one allocates nothing.
var modeValues, resultValues = func() (modes [modeCount]any, results [resultCount]any) {
	for i, name := range modeNames {
		modes[i] = name
	}
	for i, name := range resultNames {
		results[i] = name
	}
	return modes, results
}()
