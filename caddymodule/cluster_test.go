package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
