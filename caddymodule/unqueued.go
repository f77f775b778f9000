package caddymodule

import (
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// Why a request that carries a session ID was passed on without queueing,
// as label values of caddy_session_queue_unqueued_total.
const (
	unqueuedTooLong = iota
	unqueuedBadCharacters
	unqueuedUndecryptable
	unqueuedReasonCount
)

var unqueuedReasonNames = [unqueuedReasonCount]string{"too_long", "bad_characters", "undecryptable"}

// unqueuedHints name the likely cause and its fix, for the warning log.
var unqueuedHints = [unqueuedReasonCount]string{
	"session IDs are at most 256 bytes; a longer value is not the bare ID the backend keys its " +
		"session by: an encrypted cookie, such as Laravel's laravel_session, needs " +
		"`decrypt laravel {env.APP_KEY}`",
	"the value has characters outside [A-Za-z0-9,-._~%+/=] once decoded: check that `decoding` " +
		"(php, cgi, plack or none) matches how the backend reads the cookie, and that `cookies` names the " +
		"backend's session cookie",
	"the cookie does not decrypt with `decrypt`'s keys: forged or truncated, encrypted with " +
		"another key (check that the keys are the backend's APP_KEY, and add the previous key " +
		"after a key rotation), or not encrypted at all (a cookie in Laravel's " +
		"EncryptCookies::$except needs no `decrypt`)",
}

// unqueuedWarnEvery is how often, at most, each zone warns about each
// reason: a client sending junk on every request must not flood the log,
// while a misconfiguration that leaves every request unprotected is seen
// within a minute.
const unqueuedWarnEvery = time.Minute

// unqueuedCounts counts one zone's unqueued requests by reason.
type unqueuedCounts struct {
	total [unqueuedReasonCount]atomic.Uint64
	// lastWarned is the UnixNano time of each reason's last warning;
	// warnedAt is the total at that moment.
	lastWarned [unqueuedReasonCount]atomic.Int64
	warnedAt   [unqueuedReasonCount]atomic.Uint64
}

// unqueuedReason maps an idgen validation error to its reason.
func unqueuedReason(err error) int {
	switch {
	case errors.Is(err, idgen.ErrUndecryptable):
		return unqueuedUndecryptable
	case errors.Is(err, idgen.ErrTooLong):
		return unqueuedTooLong
	}
	return unqueuedBadCharacters
}

// unqueued records a request whose session ID (from where) cannot be
// queued, and warns at most once a minute per zone and reason. Neither
// the value nor its hash is logged: it is not a usable ID, but it may still
// be a secret.
func (h *Handler) unqueued(where string, err error, now time.Time) {
	z, reason := h.zone, unqueuedReason(err)
	total := z.unqueued.total[reason].Add(1)
	last := z.unqueued.lastWarned[reason].Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < unqueuedWarnEvery {
		return
	}
	if !z.unqueued.lastWarned[reason].CompareAndSwap(last, now.UnixNano()) {
		return // another request is warning about it now
	}
	since := total - z.unqueued.warnedAt[reason].Swap(total)
	h.logger.Warn("requests with a session ID passed on without queueing: their session is not serialized",
		zap.String("zone", z.name),
		zap.String("reason", unqueuedReasonNames[reason]),
		zap.String("source", where),
		zap.Uint64("count_since_last_warning", since),
		zap.String("hint", unqueuedHints[reason]))
}
