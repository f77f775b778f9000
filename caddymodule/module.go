// Package caddymodule is the Caddy side of caddy-session-queue: the
// http.handlers.session_queue handler and its session_queue directive.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sessionqueue/caddy-session-queue/idgen"
	"github.com/sessionqueue/caddy-session-queue/queue"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults applied in Provision to fields left at their zero value.
var (
	DefaultCookies    = []string{"PHPSESSID", "CGISESSID", "ci_session"}
	DefaultMaxReaders = 4
	// DefaultMaxWaiting is more than one page can have waiting: a browser
	// keeps at most 250 requests in flight on one HTTP/2 connection (the
	// default stream limit of Go's server, which Caddy keeps; HTTP/3 allows
	// 100, HTTP/1.1 six connections), so one holds the turn and 249 wait.
	DefaultMaxWaiting = 256
	DefaultMaxWait    = 30 * time.Second
	DefaultRetryAfter = time.Second
	DefaultZone       = "default"
	// DefaultRegenerateGrace and DefaultTrackWindow apply to
	// regenerate_grace and track_window.
	DefaultRegenerateGrace = 2 * time.Second
	DefaultTrackWindow     = 24 * time.Hour
)

// Handler serializes the requests of one user session: requests that carry
// the same session ID wait for each other in the proxy, in arrival order, so
// that at most one of them (a writer), or up to max_readers of those marked
// read-only, reach the backend at once. Waiting costs a goroutine here
// instead of a PHP-FPM worker or a lost session update there.
//
// A request's session ID is read from the first configured cookie it
// carries (when a cookie name appears more than once, the first value wins,
// as in PHP), then from the query parameters and headers, if configured. A
// request without a session ID, or whose ID is malformed or longer than 256
// bytes, is passed on without queueing.
//
// A request holds its session's turn until the rest of the route has
// finished with it, that is until the upstream exchange has ended. When the
// client disconnects meanwhile, the upstream request is kept running and
// its response read to the end, so the backend never works on two requests
// of one session at once.
//
// Websocket upgrades and Server-Sent Events requests are passed on without
// queueing by default (see bypass): they would hold the session's turn for
// as long as they stay open.
//
// Refusals are returned as errors, so they can be restyled with
// `handle_errors`: 429 when max_waiting requests already wait on the
// session, 503 when a request has waited max_wait or its zone shuts down;
// both carry Retry-After. A client that leaves while waiting is dropped from
// the queue and logged with status 499. So that this holds for an HTTP/1.x
// request with a body, whose departure Go notices only once the body has
// been read, such a request that has to wait has up to 1 MiB of its body
// read meanwhile; it goes upstream unchanged.
//
// Placeholders, for access logs (`log_append`) and error routes:
//
//	{http.session_queue.mode}     reader, writer or bypass
//	{http.session_queue.result}   immediate, queued, rejected_full, rejected_timeout, rejected_shutdown, rejected_cluster or canceled
//	{http.session_queue.wait_ms}  time spent waiting for the turn, in milliseconds (0 when granted at once)
//	{http.session_queue.session}  the session's name: keyed short hash of its queue key (never the ID), as in the admin API
//	{http.session_queue.fence}    in cluster mode, the fencing token of the session's lease (for header_up)
type Handler struct {
	// Cookies are the names of the cookies that carry the session ID, tried
	// in this order. Default: ["PHPSESSID", "CGISESSID", "ci_session"].
	Cookies []string `json:"cookies,omitempty"`

	// Query lists query parameters to take the session ID from when no
	// cookie carries one (for apps with session.use_only_cookies off).
	// Default: none.
	Query []string `json:"query,omitempty"`

	// Header lists request header fields to take the session ID from when
	// neither a cookie nor a query parameter carries one. Default: none.
	Header []string `json:"header,omitempty"`

	// Decoding is how the backend reads the session cookie and query
	// parameter, so that the ID queued is the one the backend will use:
	// "php" (PHP 8: cookie values percent-decoded, "." and " " in names
	// read as "_", the last of repeated query parameters wins), "cgi"
	// (Perl's CGI.pm: names and values percent-decoded, "+" a space, ","
	// separates cookies too), "plack" (Perl's Plack, Cookie::Baker: names and
	// values percent-decoded, "+" kept) or "none" (the bytes as sent).
	// Header values are always taken as sent. Default: "php".
	Decoding string `json:"decoding,omitempty"`

	// DecryptRaw, for backends that encrypt their session cookie, reads the
	// session ID out of the cookie's value (after decoding), and queues by
	// that ID: `{"format": "laravel", "keys": ["{env.APP_KEY}"]}` for
	// Laravel's EncryptCookies. The cookie goes upstream as it came. A
	// cookie that does not decrypt is passed on without queueing, and
	// counted as undecryptable. Query and header values are not decrypted.
	// Default: none, the cookie carries the bare ID.
	DecryptRaw json.RawMessage `json:"decrypt,omitempty" caddy:"namespace=http.handlers.session_queue.decrypt inline_key=format"`

	// ReadOnlyRaw are matcher sets; a request matching any of them is a
	// reader, which may share its session's turn with other readers. All
	// other requests are writers, which run alone. Default: none, every
	// request is a writer.
	ReadOnlyRaw caddyhttp.RawMatcherSets `json:"read_only,omitempty" caddy:"namespace=http.matchers"`

	// BypassRaw are matcher sets; a request matching any of them is passed
	// on without queueing, even when it carries a session ID. Setting it
	// replaces the default, which lets websocket upgrades (Upgrade:
	// websocket) and Server-Sent Events (Accept: text/event-stream) bypass:
	// they stay open for minutes and would hold their session's turn all
	// that time. Default: websockets and event streams.
	BypassRaw caddyhttp.RawMatcherSets `json:"bypass,omitempty" caddy:"namespace=http.matchers"`

	// MaxReaders is how many readers of one session may run together.
	// Default: 4.
	MaxReaders int `json:"max_readers,omitempty"`

	// MaxWaiting is how many requests may wait for one session's turn; one
	// more is refused with 429. The default is above what one page can have
	// in flight (250 requests on an HTTP/2 connection), so that no page that
	// works without the proxy is refused; max_wait bounds how long they
	// wait. Default: 256.
	MaxWaiting int `json:"max_waiting,omitempty"`

	// MaxWait is how long a request may wait for its turn before it is
	// refused with 503. Default: 30s.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`

	// RetryAfter is sent, in whole seconds rounded up, in the Retry-After
	// header of 429 and 503 replies. Default: 1s.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`

	// MaxHold, when set, gives up a turn held longer than this (long-polls,
	// stuck backends): the next request of the session is admitted while the
	// long one goes on, and an upstream request kept running for a client
	// that has left is canceled. Default: 0, a turn is held until the
	// request ends.
	MaxHold caddy.Duration `json:"max_hold,omitempty"`

	// KeyPattern is a regular expression with one capturing group: the
	// part of the session ID it captures is the queue key, for IDs that
	// carry more than the session's identity (Zend Server Session
	// Clustering IDs change their server fields when a session moves). An
	// ID it does not match is keyed by itself. Default: the whole ID.
	KeyPattern string `json:"key_pattern,omitempty"`

	// RegenerateGrace is how long after a response regenerated a session
	// ID (set the session cookie to a new value for a request carrying the
	// old one) a request from the same browser still carrying the old ID
	// is forwarded with the new one. The browser is told by its binding
	// cookie (sq_binding, __Host-sq_binding over HTTPS), which the proxy
	// sets and whoever planted the old ID cannot know. Requests of that
	// browser that were waiting when the regeneration came back are
	// forwarded whatever the grace. Requests of any other browser, or after
	// the window, go up with the old ID untouched, which keeps
	// regeneration's protection against session fixation. 0 turns the
	// window off. Default: 2s.
	RegenerateGrace *caddy.Duration `json:"regenerate_grace,omitempty"`

	// ForwardRegenerated, when false, sends every request upstream with
	// the session ID it carries: regenerated IDs still share their old ID's
	// queue, but no request is forwarded and no binding cookie is set.
	// Default: true.
	ForwardRegenerated *bool `json:"forward_regenerated,omitempty"`

	// TrackWindow is how long an ID that a client presented or was issued
	// is remembered (as a keyed hash) to spot the backend issuing the same
	// ID to another client. Default: 24h.
	TrackWindow caddy.Duration `json:"track_window,omitempty"`

	// OnDuplicate is what happens when the backend issues a session ID that
	// another client used within track_window: "log" logs it at error level
	// with both clients and the session's hash; "reject" also replaces the
	// response with 502, so the second client never receives the first
	// one's session. Both count it in duplicates_total. Default: "log".
	OnDuplicate string `json:"on_duplicate,omitempty"`

	// Mint, when set, gives a request without a session ID a new one from
	// crypto/rand in the backend's format: it is added to the request's
	// Cookie header, and set on the response (HttpOnly, SameSite=Lax, Path=/,
	// Secure over HTTPS) unless the backend sets the cookie itself. Only
	// backends that accept a client-chosen ID use it (PHP with
	// session.use_strict_mode off; with strict mode on, PHP replaces it and
	// the regeneration rule takes over). Default: off.
	Mint *MintConfig `json:"mint,omitempty"`

	// Zone names the table of queues this handler uses. Handlers with the
	// same zone share their sessions' queues (use one zone for every site
	// that fronts the same session store); the queues live on across config
	// reloads. The handlers of one zone in one config must agree on
	// max_readers, max_waiting, key_pattern and track_window; across
	// reloads, those of the newest running config are in force, once it
	// runs. Default: "default".
	Zone string `json:"zone,omitempty"`

	// Cluster, when set, serializes each session across every Caddy
	// instance of the zone that uses the same cluster settings, not only
	// within this one. It is a zone setting: the handlers of one zone in
	// one config must agree on it. Default: off.
	Cluster *ClusterConfig `json:"cluster,omitempty"`

	source   idgen.Source
	readOnly caddyhttp.MatcherSets
	bypass   caddyhttp.MatcherSets
	// bypassSet is whether bypass replaces the default; LoadModule clears
	// BypassRaw once the matchers are loaded.
	bypassSet  bool
	keyPattern idgen.KeyPattern
	minter     *idgen.Minter
	// regenerateGrace and forwarding are RegenerateGrace and
	// ForwardRegenerated with their defaults applied.
	regenerateGrace time.Duration
	forwarding      bool
	zone            *zone
	logger          *zap.Logger
}

// MintConfig says how session IDs are minted.
type MintConfig struct {
	// Format is "php", "hex" (CGI::Session's MD5-style IDs) or "base64url".
	Format string `json:"format"`
	// Length is the ID's length in characters. Default: the format's own
	// (php 32, as session.sid_length; hex 32; base64url 22, 128 bits).
	Length int `json:"length,omitempty"`
	// BitsPerCharacter is PHP's session.sid_bits_per_character (4, 5 or
	// 6), for the php format only. Default: 4.
	BitsPerCharacter int `json:"bits_per_character,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.session_queue",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision applies defaults, loads the read_only matchers and joins the
// handler's zone.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if len(h.Cookies) == 0 {
		h.Cookies = DefaultCookies
	}
	if h.MaxReaders == 0 {
		h.MaxReaders = DefaultMaxReaders
	}
	if h.MaxWaiting == 0 {
		h.MaxWaiting = DefaultMaxWaiting
	}
	if h.MaxWait == 0 {
		h.MaxWait = caddy.Duration(DefaultMaxWait)
	}
	if h.RetryAfter == 0 {
		h.RetryAfter = caddy.Duration(DefaultRetryAfter)
	}
	if h.Zone == "" {
		h.Zone = DefaultZone
	}
	h.regenerateGrace = DefaultRegenerateGrace
	if h.RegenerateGrace != nil {
		h.regenerateGrace = time.Duration(*h.RegenerateGrace)
	}
	h.forwarding = h.ForwardRegenerated == nil || *h.ForwardRegenerated
	if h.TrackWindow == 0 {
		h.TrackWindow = caddy.Duration(DefaultTrackWindow)
	}
	if h.OnDuplicate == "" {
		h.OnDuplicate = "log"
	}
	if h.Decoding == "" {
		h.Decoding = idgen.DecodePHP.String()
	}
	if err := h.validate(); err != nil {
		return err
	}
	if h.KeyPattern != "" {
		pattern, err := idgen.CompileKeyPattern(h.KeyPattern)
		if err != nil {
			return fmt.Errorf("session_queue: key_pattern: %v", err)
		}
		h.keyPattern = pattern
	}
	if h.Mint != nil {
		minter, err := idgen.NewMinter(h.Mint.Format, h.Mint.Length, h.Mint.BitsPerCharacter)
		if err != nil {
			return fmt.Errorf("session_queue: mint: %v", err)
		}
		h.minter = &minter
	}
	decoding, err := idgen.ParseDecoding(h.Decoding)
	if err != nil {
		return fmt.Errorf("session_queue: decoding: %v", err)
	}
	cookieCipher, err := h.loadDecrypt(ctx)
	if err != nil {
		return err
	}
	h.source = idgen.Source{Cookies: h.Cookies, Query: h.Query, Headers: h.Header, Decoding: decoding, Cipher: cookieCipher}

	if h.ReadOnlyRaw != nil {
		matchers, err := ctx.LoadModule(h, "ReadOnlyRaw")
		if err != nil {
			return fmt.Errorf("session_queue: read_only: loading matchers: %v", err)
		}
		if err := h.readOnly.FromInterface(matchers); err != nil {
			return fmt.Errorf("session_queue: read_only: %v", err)
		}
	}

	if h.BypassRaw != nil {
		h.bypassSet = true
		matchers, err := ctx.LoadModule(h, "BypassRaw")
		if err != nil {
			return fmt.Errorf("session_queue: bypass: loading matchers: %v", err)
		}
		if err := h.bypass.FromInterface(matchers); err != nil {
			return fmt.Errorf("session_queue: bypass: %v", err)
		}
	}
	if registry := ctx.GetMetricsRegistry(); registry != nil {
		if err := registerMetrics(registry); err != nil {
			return fmt.Errorf("session_queue: registering metrics: %v", err)
		}
	}

	// The zone belongs to this config's session_queue app, which puts the
	// settings in force once the config runs.
	var clusterSettings *clusterSettings
	if h.Cluster != nil {
		if clusterSettings, err = h.Cluster.provision(h.Zone); err != nil {
			return err
		}
	}
	app, err := ctx.App("session_queue")
	if err != nil {
		return fmt.Errorf("session_queue: loading the session_queue app: %v", err)
	}
	h.zone, err = app.(*App).join(h.Zone, zoneSettings{
		limits:      queue.Limits{MaxReaders: h.MaxReaders, MaxWaiting: h.MaxWaiting},
		keyPattern:  h.keyPattern,
		trackWindow: time.Duration(h.TrackWindow),
		cluster:     clusterSettings,
	})
	return err
}

// validate checks the settings once defaults are applied; Provision calls
// it so that `caddy adapt --validate` and a reload fail before anything is
// shared with a running config.
func (h *Handler) validate() error {
	for _, name := range h.Cookies {
		if !validCookieName(name) {
			return fmt.Errorf("session_queue: cookies: invalid cookie name %q", name)
		}
	}
	for _, name := range h.Query {
		if name == "" {
			return errors.New("session_queue: query: empty parameter name")
		}
	}
	for _, name := range h.Header {
		if !validCookieName(name) { // header field names are tokens too
			return fmt.Errorf("session_queue: header: invalid header field name %q", name)
		}
	}
	if h.MaxReaders < 1 {
		return fmt.Errorf("session_queue: max_readers: must be at least 1, got %d", h.MaxReaders)
	}
	if h.MaxWaiting < 0 {
		return fmt.Errorf("session_queue: max_waiting: must not be negative, got %d", h.MaxWaiting)
	}
	if h.MaxWait < 0 {
		return fmt.Errorf("session_queue: max_wait: must not be negative, got %s", time.Duration(h.MaxWait))
	}
	if h.RetryAfter < 0 {
		return fmt.Errorf("session_queue: retry_after: must not be negative, got %s", time.Duration(h.RetryAfter))
	}
	if h.MaxHold < 0 {
		return fmt.Errorf("session_queue: max_hold: must not be negative, got %s", time.Duration(h.MaxHold))
	}
	if h.regenerateGrace < 0 {
		return fmt.Errorf("session_queue: regenerate_grace: must not be negative, got %s", h.regenerateGrace)
	}
	if h.TrackWindow < 0 {
		return fmt.Errorf("session_queue: track_window: must not be negative, got %s", time.Duration(h.TrackWindow))
	}
	if h.OnDuplicate != "log" && h.OnDuplicate != "reject" {
		return fmt.Errorf("session_queue: on_duplicate: want log or reject, got %q", h.OnDuplicate)
	}
	return nil
}

// validCookieName reports whether name is an RFC 7230 token, which is what
// cookie names and header field names must be.
func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || isSeparator(c) {
			return false
		}
	}
	return true
}

func isSeparator(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=', '{', '}':
		return true
	}
	return false
}

// Placeholder names.
const (
	placeholderMode    = "http.session_queue.mode"
	placeholderResult  = "http.session_queue.result"
	placeholderWaitMS  = "http.session_queue.wait_ms"
	placeholderSession = "http.session_queue.session"
	placeholderFence   = "http.session_queue.fence"
)

// statusClientClosedRequest is what reverse_proxy logs for a client that
// went away; a client that leaves while queued is logged the same way.
const statusClientClosedRequest = 499

// ServeHTTP waits for the request's turn in its session's queue, runs the
// rest of the route, and gives the turn to the next request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	z := h.zone
	stripe := z.enter(r)
	defer z.leave(stripe)

	// One reading of the clock serves the tracker and the wait.
	arrived := time.Now()
	found, carriesID, malformed := h.source.Extract(r)
	if malformed != nil {
		carriesID = false
		h.unqueued(found.Where(), malformed, arrived)
	}
	bypass, err := h.bypasses(r)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	sreq := sessionRequest{client: clientAddress(r), secure: requestIsHTTPS(r)}
	// One look through the Cookie header spares the two below most
	// requests, which carry no binding cookie.
	if headerMentions(r.Header["Cookie"], bindingCookie) {
		if h.forwarding {
			sreq.binding = presentedBinding(r, sreq.secure)
		}
		stripBindingCookies(r)
	}
	if !carriesID && malformed == nil && !bypass && h.minter != nil {
		found = idgen.Found{ID: h.minter.Mint(), Kind: "cookie", Name: h.Cookies[0]}
		carriesID, sreq.minted = true, true
		h.source.Decoding.SetCookie(r.Header, found.Name, found.ID)
	}
	if carriesID && found.Kind == "cookie" {
		sreq.cookie, sreq.upstreamID = found.Name, found.ID
		if !sreq.minted {
			sreq.knownID = z.tracker.Presented(found.ID, sreq.client, arrived)
		}
	}
	if !carriesID || bypass {
		return h.serveUnqueued(w, r, next, stripe, sreq, bypass)
	}

	mode, qmode := modeWriter, queue.Write
	if len(h.readOnly) > 0 {
		isReader, err := h.readOnly.AnyMatchWithError(r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("session_queue: read_only: %w", err))
		}
		if isReader {
			mode, qmode = modeReader, queue.Read
		}
	}
	return h.serveQueued(w, r, next, stripe, sreq, found.ID, mode, qmode, arrived)
}

// serveUnqueued passes on a request that bypasses the queue or carries no
// session ID; the latter's response may issue it one.
func (h *Handler) serveUnqueued(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, stripe *zoneStripe, sreq sessionRequest, bypass bool) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set(placeholderMode, modeValues[modeBypass])
	stripe.count(modeBypass, resultImmediate)
	stripe.inFlight[modeBypass].Add(1)
	defer stripe.inFlight[modeBypass].Add(-1)
	if bypass {
		return next.ServeHTTP(w, r)
	}
	sw := &sessionWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, req: sreq}
	if err := next.ServeHTTP(sw, r); err != nil {
		return err
	}
	return sw.err()
}

// serveQueued serves a request with the session ID id, which arrived at
// start, in its session's turn. It is a function of its own, with few
// returns, so that the compiler open-codes its defers.
func (h *Handler) serveQueued(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, stripe *zoneStripe, sreq sessionRequest, id string, mode int, qmode queue.Mode, start time.Time) error {
	z := h.zone
	root, pin := z.lineages.Resolve(id)
	body := watchQueuedBody(w, r)
	turn, key, res, err := z.acquire(body.waitContext(r), stripe, root, qmode, start, time.Duration(h.MaxWait), body.onQueued())
	q := h.newQueuedRequest(w, sreq, mode)
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Map(q.placeholder)
	if err == nil {
		q.held.turn = turn
		// At once, so that nothing between here and the end of the request
		// can keep the session's turn, not even a panic.
		defer q.held.release()
	}
	pin.Release()
	// A session is named by its queue key, the same before and after a
	// regeneration, in logs and placeholders as in the admin API.
	q.session.key = key
	// A turn granted at once waited for nobody: 0, which costs neither a
	// reading of the clock nor an allocation to box.
	var waited time.Duration
	if res.Queued {
		waited = time.Since(start)
		q.waitedMS = float64(waited) / float64(time.Millisecond)
	}
	err = body.finish(err)
	stripe.observeWait(mode, waited)
	if err != nil {
		return h.refuse(w, stripe, q, err, res, waited)
	}
	q.result = resultImmediate
	if res.Queued {
		q.result = resultQueued
		if c := h.logger.Check(zapcore.DebugLevel, "turn granted after waiting"); c != nil {
			c.Write(zap.Stringer("session", &q.session), zap.String("mode", modeNames[mode]),
				zap.Int("ahead", res.Ahead), zap.Duration("waited", waited))
		}
	}
	q.fence = turn.leases.fence()
	stripe.count(mode, int(q.result))
	stripe.inFlight[mode].Add(1)
	defer stripe.inFlight[mode].Add(-1)
	if sreq.cookie != "" && !sreq.minted && h.forwarding {
		// Requests that waited behind a regeneration, or that the same
		// browser sent with the old ID just after it, go up with the new ID.
		if newID, forwarded := z.lineages.Forward(id, sreq.binding, start, h.regenerateGrace); forwarded {
			if err := h.source.SetCookie(r.Header, sreq.cookie, newID); err != nil {
				h.logger.Error("regenerated session ID not forwarded: cannot write its cookie", zap.Stringer("session", &q.session), zap.Error(err))
			} else {
				q.writer.req.upstreamID = newID
			}
		}
	}
	if err := h.serveHolding(q, r, next); err != nil {
		return err
	}
	return q.writer.err()
}

// bypasses reports whether a request with a session ID skips the queue:
// one that matches `bypass`, or by default a websocket upgrade or an
// event stream, which would hold the session's turn for as long as they
// stay open.
func (h *Handler) bypasses(r *http.Request) (bool, error) {
	if !h.bypassSet {
		return isLongLived(r), nil
	}
	if len(h.bypass) == 0 {
		return false, nil
	}
	match, err := h.bypass.AnyMatchWithError(r)
	if err != nil {
		return false, fmt.Errorf("session_queue: bypass: %w", err)
	}
	return match, nil
}

// isLongLived reports websocket upgrades and Server-Sent Events requests.
// Over HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) a websocket, or any other
// tunnel, is an extended CONNECT request, with a :protocol pseudo-header
// and no Upgrade header: Go's HTTP/2 server passes :protocol on as a
// header field, quic-go puts it in r.Proto.
func isLongLived(r *http.Request) bool {
	if r.Method == http.MethodConnect {
		switch r.ProtoMajor {
		case 2:
			return r.Header.Get(":protocol") != ""
		case 3:
			return r.Proto != "HTTP/3.0"
		}
	}
	// Indexed directly: the keys are canonical already, and this runs on
	// every request.
	for _, v := range r.Header["Upgrade"] {
		if headerHasToken(v, "websocket") {
			return true
		}
	}
	for _, v := range r.Header["Accept"] {
		if headerHasToken(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// headerHasToken reports whether a comma-separated header value lists
// token, ignoring case and parameters (";q=0.9").
func headerHasToken(value, token string) bool {
	for value != "" {
		var item string
		item, value, _ = strings.Cut(value, ",")
		item, _, _ = strings.Cut(item, ";")
		if strings.EqualFold(strings.TrimSpace(item), token) {
			return true
		}
	}
	return false
}

// refuse answers a request that got no turn.
func (h *Handler) refuse(w http.ResponseWriter, stripe *zoneStripe, q *queuedRequest, err error, res queue.Result, waited time.Duration) error {
	session := &q.session
	var status, result int
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		status, result = http.StatusTooManyRequests, resultRejectedFull
		err = fmt.Errorf("session_queue: session %s already has %d requests waiting (max_waiting)", session, h.zone.table.Limits().MaxWaiting)
	case errors.Is(err, queue.ErrClosed):
		status, result = http.StatusServiceUnavailable, resultRejectedShutdown
		err = fmt.Errorf("session_queue: zone %s is shutting down; session %s was not served", h.Zone, session)
	case errors.Is(err, errClusterUnavailable):
		status, result = http.StatusServiceUnavailable, resultRejectedCluster
		err = fmt.Errorf("session_queue: zone %s: redis unavailable, and session %s is not leased to this instance (cluster on_error reject)", h.Zone, session)
	case errors.Is(err, errClusterSecretMismatch):
		status, result = http.StatusServiceUnavailable, resultRejectedCluster
		err = fmt.Errorf("%w; session %s of zone %s refused", err, session, h.Zone)
	case errors.Is(err, queue.ErrTimeout):
		status, result = http.StatusServiceUnavailable, resultRejectedTimeout
		err = fmt.Errorf("session_queue: waited %s (max_wait) for session %s behind %d requests", time.Duration(h.MaxWait), session, res.Ahead)
	default:
		status, result = statusClientClosedRequest, resultCanceled
		err = fmt.Errorf("session_queue: client left after waiting %s for session %s: %w", waited.Round(time.Millisecond), session, err)
	}
	q.result = int8(result)
	stripe.count(int(q.mode), result)
	if status != statusClientClosedRequest {
		w.Header().Set("Retry-After", retryAfterSeconds(time.Duration(h.RetryAfter)))
	}
	return caddyhttp.Error(status, err)
}

// retryAfterSeconds formats d for Retry-After: whole seconds, rounded up,
// at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
