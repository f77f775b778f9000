package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestUnmarshalCluster(t *testing.T) {
	d := caddyfile.NewTestDispenser(`session_queue {
		zone php
		cluster redis {
			address    unix//run/redis.sock
			username   {env.SQ_USER}
			password   {env.SQ_PASS}
			db         2
			tls        /etc/ca.pem
			secret     {file./etc/sq-secret}
			key_prefix sq:x:
			lease_ttl  20s
			op_timeout 100ms
			on_error   local
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h.Cluster)
	want := `{"redis":{"address":"unix//run/redis.sock","username":"{env.SQ_USER}","password":"{env.SQ_PASS}","db":2,"tls":{"ca_file":"/etc/ca.pem"},"secret":"{file./etc/sq-secret}","key_prefix":"sq:x:","lease_ttl":20000000000,"op_timeout":100000000,"on_error":"local"}}`
	if string(got) != want {
		t.Fatalf("cluster =\n%s\nwant\n%s", got, want)
	}
}

func TestUnmarshalClusterErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`cluster`, "needs a backend"},
		{`cluster etcd {
		}`, "needs a backend"},
		{`cluster redis {
			on_error maybe
		}`, "cluster redis on_error: want reject or local"},
		{`cluster redis {
			bogus 1
		}`, `unrecognized option "bogus"`},
		{`cluster redis {
			lease_ttl 1s
			lease_ttl 2s
		}`, "given more than once"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("session_queue {\n" + tc.in + "\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestClusterProvision(t *testing.T) {
	t.Setenv("SQ_TEST_SECRET", "0123456789abcdef-secret")
	s, err := (&ClusterConfig{Redis: &RedisCluster{Address: "unix//tmp/r.sock", Secret: "{env.SQ_TEST_SECRET}"}}).provision("shop")
	if err != nil {
		t.Fatal(err)
	}
	if s.conn.secret != "0123456789abcdef-secret" || s.conn.prefix != "sq:shop:" || s.conn.network != "unix" ||
		s.conn.address != "/tmp/r.sock" || s.conn.leaseTTL != DefaultLeaseTTL || s.conn.opTimeout != DefaultOpTimeout || s.onError != "reject" {
		t.Fatalf("settings %+v", s)
	}
	for _, tc := range []struct {
		r    RedisCluster
		want string
	}{
		{RedisCluster{}, "cluster redis: secret: required"},
		{RedisCluster{Secret: "short"}, "secret: must be at least 16 characters"},
		{RedisCluster{Secret: "{env.SQ_TEST_UNSET_VAR}"}, "cluster redis: secret:"},
		{RedisCluster{Secret: "0123456789abcdef", LeaseTTL: caddy.Duration(time.Second), OpTimeout: caddy.Duration(time.Second)}, "lease_ttl: must be at least 4 × op_timeout"},
		{RedisCluster{Secret: "0123456789abcdef", OnError: "x"}, "on_error: want reject or local"},
	} {
		if _, err := (&ClusterConfig{Redis: &tc.r}).provision("z"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.r, err, tc.want)
		}
	}
}

// Caddy starts its apps in no fixed order and serves once the http app has
// started: a request may come before the session_queue app has put the
// zone's cluster mode in force. It must wait for it, not run on local
// serialization alone. Redis here is a socket nobody listens on, so that
// cluster mode, once in force, refuses the request (on_error reject).
func TestClusterRequestWaitsForItsConfigToStart(t *testing.T) {
	h := &Handler{Zone: "cluster-before-start", Cluster: &ClusterConfig{Redis: &RedisCluster{
		Address: "unix/" + filepath.Join(t.TempDir(), "nobody.sock"), Secret: "0123456789abcdef-secret",
	}}}
	app, err := provisionIn(t, h)
	if err != nil {
		t.Fatal(err)
	}
	const id = "before-start-session-id"
	reached := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Cookie", "PHPSESSID="+id)
		req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		served <- h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			close(reached)
			return nil
		}))
	}()
	// The request holds its local turn: it is either waiting for the
	// config to start, or (the failure) past the session_queue handler.
	for !h.zone.busy(id) {
		select {
		case err := <-served:
			t.Fatalf("served before its config started: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-reached:
		t.Fatal("the request reached the next handler before its config's cluster mode was in force")
	default:
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer app.Stop()
	err = <-served
	var herr caddyhttp.HandlerError
	if !errors.As(err, &herr) || herr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("with Redis unreachable once the config started: %v, want 503", err)
	}
	select {
	case <-reached:
		t.Fatal("the request reached the next handler without a lease")
	default:
	}
}
