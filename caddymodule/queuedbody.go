package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// maxQueuedBody is how much of a waiting request's body is read while it
// waits. A client that leaves while a longer body waits is noticed only
// when its turn comes, and the upstream request then fails at once.
const maxQueuedBody = 1 << 20

// queuedBody reads the body of an HTTP/1.x request while it waits for its
// turn. Go's HTTP/1 server notices that a client has gone only once the
// request's body has been read to its end (its background read of the
// connection starts there), and nothing else reads a waiting request's
// body: its client could leave and the request keep its place, run
// upstream for nobody when its turn came, and never be logged as 499.
// Reading the body to its end lets the server notice, and a read that
// fails, a client gone mid-body, ends the wait itself. What was read goes
// upstream first, followed by anything left unread, so the backend gets
// the body whole and in order.
//
// HTTP/2 and HTTP/3 need none of this: they cancel a request's context when
// the client resets its stream or drops the connection, whether the body
// was read or not (net/http's HTTP/2 server closes the stream, quic-go's
// HTTP/3 server ties the context to the stream's send side).
type queuedBody struct {
	w    http.ResponseWriter
	r    *http.Request
	body io.ReadCloser
	// ctx is the wait's context; the reader ends it with the read error.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// buf and err are the reader's, until done is closed; done stays nil
	// when the request never had to wait.
	buf  bytes.Buffer
	err  error
	done chan struct{}
}

// watchQueuedBody prepares to read r's body should r have to wait; it
// returns nil for a request with no body to watch. The methods of a nil
// *queuedBody leave the request alone.
func watchQueuedBody(w http.ResponseWriter, r *http.Request) *queuedBody {
	// ContentLength is 0 for a request without a body (chunked is -1),
	// also when Caddy has wrapped its http.NoBody.
	if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	b := &queuedBody{w: w, r: r, body: r.Body}
	b.ctx, b.cancel = context.WithCancelCause(r.Context())
	return b
}

// waitContext is the context for r to wait with.
func (b *queuedBody) waitContext(r *http.Request) context.Context {
	if b == nil {
		return r.Context()
	}
	return b.ctx
}

// onQueued is the hook for queue.Table.AcquireFunc, which calls it only
// when the request has to wait: an uncontended request's body is left to
// stream upstream untouched.
func (b *queuedBody) onQueued() func() {
	if b == nil {
		return nil
	}
	return func() {
		b.done = make(chan struct{})
		go b.read()
	}
}

// read reads the body into buf, to its end or to maxQueuedBody+1 bytes.
// An Expect: 100-continue request is told to go on at the first read,
// as it would be once its turn came.
func (b *queuedBody) read() {
	defer close(b.done)
	if n := b.r.ContentLength; n > 0 && n <= maxQueuedBody {
		b.buf.Grow(int(n) + bytes.MinRead) // ReadFrom wants MinRead spare bytes to see EOF
	}
	_, err := b.buf.ReadFrom(io.LimitReader(b.body, maxQueuedBody+1))
	if err == nil {
		return
	}
	b.err = err
	// A limit of the route's own (request_body's max_size) is for the
	// route to answer, once the turn comes, as it does unqueued; any other
	// failure is the client's connection.
	if _, ours := errors.AsType[caddyhttp.HandlerError](err); !ours {
		b.cancel(err)
	}
}

// finish ends the watch once the wait is over, and returns the wait's
// error: acquireErr, or the reason the body reader ended the wait. It waits
// for the reader to stop, after cutting short a read still blocked when the
// request got no turn (the connection then closes, as for any handler that
// leaves a body unread), and puts what it read back in front of the rest of
// the body; ContentLength stays as it was. A granted request waits for the
// read as its upstream request would wait for the body.
func (b *queuedBody) finish(acquireErr error) error {
	if b == nil {
		return acquireErr
	}
	defer b.cancel(nil)
	if b.done == nil {
		return acquireErr
	}
	if acquireErr != nil {
		select {
		case <-b.done:
		default:
			// Without a read deadline to set (not the case for Caddy's
			// HTTP/1 writers) the read ends when the client sends or leaves.
			_ = http.NewResponseController(b.w).SetReadDeadline(time.Now())
		}
	}
	<-b.done
	var rest io.Reader = b.body
	if b.err != nil {
		rest = errReader{b.err}
	}
	b.r.Body = readCloser{Reader: io.MultiReader(&b.buf, rest), Closer: b.body}
	if acquireErr != nil && acquireErr == b.ctx.Err() {
		return context.Cause(b.ctx)
	}
	return acquireErr
}

// errReader repeats the error that ended the body reader.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type readCloser struct {
	io.Reader
	io.Closer
}
