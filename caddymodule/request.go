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
}

// newQueuedRequest wraps w: the route writes to drain, which passes on to
// writer, which passes on to w.
func (h *Handler) newQueuedRequest(w http.ResponseWriter, sreq sessionRequest) *queuedRequest {
	q := &queuedRequest{}
	q.wrapper.ResponseWriter = w
	q.writer = sessionWriter{ResponseWriterWrapper: &q.wrapper, h: h, req: sreq}
	q.drain = drainingWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: &q.writer}, h: h, session: &q.session}
	return q
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
