package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// failingBody yields its data, then err.
type failingBody struct {
	io.Reader
	err error
}

func (b *failingBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		err = b.err
	}
	return n, err
}

func (b *failingBody) Close() error { return nil }

// TestQueuedBodyReadError: a client gone mid-body ends the wait with the
// read error as its cause; a limit of the route's (request_body) does not
// end it, and reaches upstream after the bytes read, as it would unqueued.
func TestQueuedBodyReadError(t *testing.T) {
	gone := &failingBody{Reader: strings.NewReader("half"), err: io.ErrUnexpectedEOF}
	r := httptest.NewRequest(http.MethodPost, "/", gone)
	b := watchQueuedBody(httptest.NewRecorder(), r)
	ctx := b.waitContext(r)
	b.onQueued()()
	<-ctx.Done()
	if err := b.finish(ctx.Err()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("client gone mid-body: wait ended with %v, want io.ErrUnexpectedEOF", err)
	}

	tooLarge := caddyhttp.Error(http.StatusRequestEntityTooLarge, &http.MaxBytesError{Limit: 4})
	r = httptest.NewRequest(http.MethodPost, "/", &failingBody{Reader: strings.NewReader("four"), err: tooLarge})
	b = watchQueuedBody(httptest.NewRecorder(), r)
	ctx = b.waitContext(r)
	b.onQueued()()
	<-b.done
	if ctx.Err() != nil {
		t.Fatalf("request_body's limit ended the wait: %v", context.Cause(ctx))
	}
	if err := b.finish(nil); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.Body)
	if string(got) != "four" || !errors.Is(err, tooLarge) {
		t.Fatalf("upstream body: %q, %v; want \"four\" then the 413 error", got, err)
	}
}

// TestQueuedBodyLeavesOthersAlone: requests without a body, and those not
// over HTTP/1.x, are not watched.
func TestQueuedBodyLeavesOthersAlone(t *testing.T) {
	get := httptest.NewRequest(http.MethodGet, "/", nil)
	h2 := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	h2.ProtoMajor, h2.ProtoMinor = 2, 0
	for _, r := range []*http.Request{get, h2} {
		b := watchQueuedBody(httptest.NewRecorder(), r)
		if b != nil || b.onQueued() != nil || b.waitContext(r) != r.Context() || b.finish(nil) != nil {
			t.Errorf("%s HTTP/%d request watched", r.Method, r.ProtoMajor)
		}
	}
}

// TestQueuedBodyNotWatchedWithoutBody: a request without a body costs no
// watcher, also when Caddy has wrapped its body (its server wraps every
// request's body in a reader of its own, so http.NoBody is not seen).
func TestQueuedBodyNotWatchedWithoutBody(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Body = io.NopCloser(r.Body)
	if r.ContentLength != 0 {
		t.Fatalf("ContentLength %d", r.ContentLength)
	}
	if b := watchQueuedBody(httptest.NewRecorder(), r); b != nil {
		t.Error("a request without a body is watched")
	}
}
