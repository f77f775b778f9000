package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// heldTurn is a granted turn, given up once: by the defer that follows its
// grant, or earlier when max_hold runs out.
type heldTurn struct {
	turn     sessionTurn
	released atomic.Bool
}

func (t *heldTurn) release() {
	if t.released.CompareAndSwap(false, true) {
		t.turn.Release()
	}
}

// serveHolding runs the rest of the route while the request holds its
// turn. The route gets a context that does not end when the client leaves,
// and a writer that swallows what the client no longer takes: an upstream
// request canceled, or a response abandoned, mid-way would free the turn
// while the backend may still be working on it, and the next request would
// overlap it. max_hold, when set, bounds how long that goes on.
func (h *Handler) serveHolding(q *queuedRequest, r *http.Request, next caddyhttp.Handler) error {
	upstreamCtx := context.WithoutCancel(r.Context())
	w, held, session := &q.drain, &q.held, &q.session
	if h.MaxHold <= 0 {
		return next.ServeHTTP(w, r.WithContext(upstreamCtx))
	}

	upstreamCtx, cancelUpstream := context.WithCancel(upstreamCtx)
	defer cancelUpstream()
	var expired atomic.Bool
	// Whichever of expiry and disconnect comes second cancels the upstream
	// request: there is nobody left to answer, and no turn left to guard.
	holdTimer := time.AfterFunc(time.Duration(h.MaxHold), func() {
		expired.Store(true)
		held.release()
		h.zone.holdExpired.Add(1)
		h.logger.Warn("max_hold elapsed; turn given up while the request goes on",
			zap.Stringer("session", session), zap.Duration("max_hold", time.Duration(h.MaxHold)))
		if r.Context().Err() != nil {
			cancelUpstream()
		}
	})
	defer holdTimer.Stop()
	stopAfterDisconnect := context.AfterFunc(r.Context(), func() {
		if expired.Load() {
			cancelUpstream()
		}
	})
	defer stopAfterDisconnect()
	return next.ServeHTTP(w, r.WithContext(upstreamCtx))
}

// drainingWriter discards the rest of a response once writing it to the
// client has failed, and reports success: reverse_proxy then reads the
// upstream response to its end, so the turn is held until the backend has
// finished, instead of closing the upstream connection and aborting the
// handler chain while the backend still works. Handler calls on one
// response are not concurrent (reverse_proxy's delayed flushes take its
// writer's lock), so failed needs no lock.
type drainingWriter struct {
	// By value, so that wrapping costs one allocation.
	caddyhttp.ResponseWriterWrapper
	h       *Handler
	session *sessionName
	failed  bool
}

func (w *drainingWriter) Write(p []byte) (int, error) {
	if !w.failed {
		if _, err := w.ResponseWriterWrapper.Write(p); err != nil {
			w.clientGone(err)
		}
	}
	return len(p), nil
}

// ReadFrom passes on an error of the copy, since it may be the source's:
// what is copied this way is a file (file_server), not the response of
// the backend that the turn guards.
func (w *drainingWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.failed {
		return io.Copy(io.Discard, src)
	}
	return w.ResponseWriterWrapper.ReadFrom(src)
}

// FlushError is found by http.ResponseController before Unwrap, so that
// flushes, which reverse_proxy makes after every write of a streamed
// response, fail no more than writes do.
func (w *drainingWriter) FlushError() error {
	if w.failed {
		return nil
	}
	err := http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		w.clientGone(err)
		return nil
	}
	return err
}

func (w *drainingWriter) clientGone(err error) {
	w.failed = true
	if c := w.h.logger.Check(zapcore.DebugLevel, "client gone mid-response; reading the rest of the upstream response before giving up the turn"); c != nil {
		c.Write(zap.Stringer("session", w.session), zap.Error(err))
	}
}
