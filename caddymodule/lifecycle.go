package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// sessionRequest is what the response side needs to know about a request
// that went upstream with a session ID, or with none.
type sessionRequest struct {
	// cookie is the name of the session cookie the request carried, or
	// "" when it carried no session cookie.
	cookie string
	// upstreamID is the ID sent upstream, after any forwarding rewrite or
	// minting; "" when none was.
	upstreamID string
	// minted is true when upstreamID was made here.
	minted bool
	// knownID is true when the session ID the request carried in its
	// cookie was seen before (see DuplicateTracker.Presented).
	knownID bool
	client  string
	// secure is true over HTTPS, where a minted cookie gets Secure and the
	// binding cookie is the __Host- one.
	secure bool
	// binding is the browser's binding token: the one the request
	// presented, or one issued with the response; "" while it has none, and
	// always when forward_regenerated is off.
	binding string
}

// clientAddress is the client's IP as Caddy determined it (honouring
// trusted_proxies), the address duplicate detection compares.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return r.RemoteAddr
}

// sessionWriter watches the response for what it does to the session
// cookie, before the headers go out: a new value for a request that carried
// an ID is a regeneration, a value for a request that carried none is an
// issued ID (checked for duplicates), a deletion is a logout. It also sets
// the cookie of a minted ID and the binding cookie, and swallows a response
// whose duplicate ID must not reach the client.
type sessionWriter struct {
	*caddyhttp.ResponseWriterWrapper
	h          *Handler
	req        sessionRequest
	checked    bool
	duplicated error // set when the response is replaced by a 502
	// bindingField is the Set-Cookie field of a req.binding made for
	// this response, "" when the request presented one.
	bindingField string
}

func (w *sessionWriter) WriteHeader(status int) {
	if status >= 200 && !w.checked {
		w.checked = true
		w.inspect()
	}
	if w.duplicated != nil {
		return
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *sessionWriter) Write(p []byte) (int, error) {
	if !w.checked {
		w.WriteHeader(http.StatusOK)
	}
	if w.duplicated != nil {
		return len(p), nil
	}
	return w.ResponseWriterWrapper.Write(p)
}

func (w *sessionWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.checked {
		w.WriteHeader(http.StatusOK)
	}
	if w.duplicated != nil {
		return io.Copy(io.Discard, r)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError keeps a flush from sending the headers of a response that is
// being replaced.
func (w *sessionWriter) FlushError() error {
	if w.duplicated != nil {
		return nil
	}
	if !w.checked {
		w.WriteHeader(http.StatusOK)
		if w.duplicated != nil {
			return nil
		}
	}
	return http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush()
}

// err is the error that replaces a withheld response (on_duplicate reject),
// or nil.
func (w *sessionWriter) err() error {
	if w.duplicated != nil {
		return caddyhttp.Error(http.StatusBadGateway, w.duplicated)
	}
	return nil
}

// inspect applies the response's Set-Cookie for the session cookie, and
// adds the cookies the proxy sets: the minted ID, unless the backend set
// the cookie itself, and the binding cookie for a browser without one that
// is given a session cookie now, or holds one seen before. A session ID
// never seen before gets no binding with its first response: most are
// clients that keep no cookies (crawlers, scripts, a flood of made-up
// IDs), for which a token made and sent with every response is wasted;
// a browser's next request brings the ID seen (see binding.go).
func (w *sessionWriter) inspect() {
	handled := w.followSessionCookie()
	if w.duplicated != nil {
		return
	}
	if w.req.minted && !handled {
		http.SetCookie(w, &http.Cookie{
			Name: w.req.cookie, Value: w.req.upstreamID, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: w.req.secure,
		})
	}
	if w.req.cookie != "" && (w.req.knownID || w.req.minted) {
		w.binding()
	}
	if w.bindingField != "" {
		w.Header()["Set-Cookie"] = append(w.Header()["Set-Cookie"], w.bindingField)
	}
}

// binding returns the browser's binding token, making one to issue with
// this response when the request presented none. While forward_regenerated
// is off no token is needed, and it returns "".
func (w *sessionWriter) binding() string {
	if !w.h.forwarding {
		return ""
	}
	if w.req.binding == "" {
		w.req.binding, w.bindingField = newBindingCookie(w.req.secure)
	}
	return w.req.binding
}

// followSessionCookie acts on what the response does to the session
// cookie, and reports whether it set or deleted it.
func (w *sessionWriter) followSessionCookie() (handled bool) {
	if len(w.Header()["Set-Cookie"]) == 0 {
		// Most responses set no cookie: nothing to look through, and no
		// clock to read (a tenth of a microsecond on a busy server).
		return false
	}
	h, z, now := w.h, w.h.zone, time.Now()
	for _, name := range h.Cookies {
		if w.req.cookie != "" && !w.req.minted && name != w.req.cookie {
			continue // a request with a session watches its own cookie
		}
		action, value, err := h.source.ResponseCookie(w.Header(), name, now)
		if err != nil {
			if c := h.logger.Check(zapcore.DebugLevel, "response sets a session ID that is not tracked"); c != nil {
				c.Write(zap.String("reason", err.Error()))
			}
			continue
		}
		switch {
		case action == idgen.CookieDeleted && w.req.upstreamID != "" && !w.req.minted:
			z.lineages.Unlink(w.req.upstreamID)
		case action == idgen.CookieSet && value == w.req.upstreamID:
			// The backend confirms the ID it was sent (a minted one, say).
		case action == idgen.CookieSet && w.req.upstreamID != "" && !w.req.minted:
			w.regenerated(value, now)
		case action == idgen.CookieSet:
			if !w.issued(name, value, now) {
				w.binding()
			}
		default:
			continue
		}
		return true
	}
	return false
}

// regenerated links a new ID to the one the request went up with. The new
// ID is issued to a client that did not present it, so it is checked for
// duplicates first: a colliding ID must not join this session's queue.
func (w *sessionWriter) regenerated(newID string, now time.Time) {
	z := w.h.zone
	if w.issued(w.req.cookie, newID, now) {
		return
	}
	if !z.lineages.Link(w.req.upstreamID, newID, w.binding(), now) {
		return // newID belongs to another lineage; not followed
	}
	z.linkClusterRegeneration(w.req.upstreamID, newID)
	z.regenerations.Add(1)
	if c := w.h.logger.Check(zapcore.DebugLevel, "session ID regenerated; following it"); c != nil {
		c.Write(zap.String("session", z.sessionName(newID)))
	}
}

// issued checks an ID the backend hands to a client against those other
// clients presented or were issued within track_window, and reports whether
// it is a duplicate.
func (w *sessionWriter) issued(name, id string, now time.Time) (duplicate bool) {
	z := w.h.zone
	dup, found := z.tracker.Issued(id, w.req.client, now)
	if !found {
		return false
	}
	z.duplicates.Add(1)
	w.h.logger.Error("backend issued a session ID that another client uses",
		zap.String("session", dup.Hash),
		zap.String("cookie", name),
		zap.String("first_client", dup.FirstClient),
		zap.Bool("first_client_was_issued_it", dup.FirstIssued),
		zap.String("second_client", dup.SecondClient),
		zap.Time("first_seen", dup.FirstSeen),
		zap.String("on_duplicate", w.h.OnDuplicate))
	if w.h.OnDuplicate == "reject" {
		z.tracker.Withheld(id, dup)
		// Error routes may show this message to the second client: the
		// clients' addresses are in the log line above only.
		w.duplicated = fmt.Errorf("session_queue: backend issued session %s, which another client used within track_window; response withheld",
			dup.Hash)
		for k := range w.Header() {
			delete(w.Header(), k)
		}
	}
	return true
}
