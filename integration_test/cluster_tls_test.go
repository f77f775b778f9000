package integration_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemFile string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pemFile: filepath.Join(dir, name+".pem")}
	writeFile(t, ca.pemFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return ca
}

// issue writes a server certificate for 127.0.0.1 signed by ca, and its
// key, and returns their paths.
func (ca *testCA) issue(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	return writeServerCertificate(t, dir, "redis", ca.cert, ca.key)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// clusterACL is the least a cluster user needs: its commands, and its
// keys and channels under the key prefix.
var clusterACL = []string{"~sq:*", "&sq:*", "+evalsha", "+eval", "+script|load", "+set", "+subscribe", "+ping",
	"+time", "+get", "+hget", "+hset", "+hdel", "+hexists", "+lpop", "+rpush", "+llen", "+lrem", "+pexpire", "+publish"}

// startTLSRedis starts a redis-server that speaks TLS only on a TCP port
// of 127.0.0.1, with certFile, and a user sq with password; redis-cli
// reaches it as the default user through its unix socket.
func startTLSRedis(t *testing.T, dir, certFile, keyFile, caFile, password string) (addr, sock string) {
	t.Helper()
	port := freePort(t)
	sock, _ = startRedisWith(t, dir, "redis-tls", append([]string{
		"--tls-port", fmt.Sprint(port),
		"--bind", "127.0.0.1",
		"--tls-cert-file", certFile,
		"--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no",
		"--user", "sq", "on", ">" + password}, clusterACL...)...)
	return fmt.Sprintf("127.0.0.1:%d", port), sock
}

// TestClusterRedisTLSAndACL: cluster mode to a Redis that speaks only TLS,
// as an ACL user allowed only the commands, keys and channels it needs.
// With the right CA and password, two instances serialize sessions over
// it; with a CA that did not sign Redis's certificate, or a wrong
// password, requests get 503 (on_error reject), the errors are counted,
// and the log says why.
func TestClusterRedisTLSAndACL(t *testing.T) {
	dir := backendDir(t)
	ca, wrongCA := newTestCA(t, dir, "ca"), newTestCA(t, dir, "other-ca")
	certFile, keyFile := ca.issue(t, dir)
	const password = "redis-acl-password-0123"
	addr, sock := startTLSRedis(t, dir, certFile, keyFile, ca.pemFile, password)
	t.Setenv("SQ_IT_REDIS_PASSWORD", password)
	// timings: the load's first requests open some 200 TLS connections
	// at once, which under -race can take a while.
	sq := func(caFile, password, timings string) string {
		return fmt.Sprintf(`session_queue {
	read_only header X-Read 1
	max_readers 3
	max_wait 60s
	cluster redis {
		address %s
		tls %s
		username sq
		password %s
		secret %s
		%s
	}
}`, addr, caFile, password, clusterSecret, timings)
	}

	t.Run("right CA and password", func(t *testing.T) {
		b := startOverlapBackend(t, 3)
		caddyDir := backendDir(t)
		site := fmt.Sprintf(fenceUpstream, b.addr)
		ins := []*instance{
			startInstance(t, caddyDir, 0, sq(ca.pemFile, "{env.SQ_IT_REDIS_PASSWORD}", "op_timeout 2s\n\t\tlease_ttl 10s"), site),
			startInstance(t, caddyDir, 1, sq(ca.pemFile, "{env.SQ_IT_REDIS_PASSWORD}", "op_timeout 2s\n\t\tlease_ttl 10s"), site),
		}
		res := runLoad(t, ins, 50, 8)
		overlaps, fenceBack, fenced, sessions := b.counts()
		// Every connection of the instances came in on the TLS port (Redis
		// has no other TCP port), as user sq.
		var tlsClients, others int
		for line := range strings.SplitSeq(redisCLI(t, sock, "CLIENT", "LIST"), "\n") {
			switch {
			case strings.Contains(line, " laddr="+addr+" ") && strings.Contains(line, " user=sq "):
				tlsClients++
			case strings.Contains(line, " laddr="+addr+" "):
				others++
			}
		}
		t.Logf("over TLS as ACL user sq: %d sessions, statuses %v, %d errors, %d overlaps, %d fenced, %d fences back; %d connections on the TLS port as sq, %d as another user",
			sessions, res.statuses, res.errors, overlaps, fenced, fenceBack, tlsClients, others)
		if overlaps != 0 || fenceBack != 0 || res.errors != 0 || res.statuses[200] != 50*8 || fenced != 50*8 {
			t.Fatal("cluster mode over TLS let requests overlap, or failed some")
		}
		if tlsClients < 4 || others != 0 {
			t.Fatal("the instances are not connected over TLS as user sq")
		}
	})

	for _, c := range []struct{ name, caFile, password, logged string }{
		{"wrong CA", wrongCA.pemFile, "{env.SQ_IT_REDIS_PASSWORD}", "x509: certificate signed by unknown authority"},
		{"wrong password", ca.pemFile, "not-the-password", "WRONGPASS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := startOverlapBackend(t, 3)
			in := startInstance(t, backendDir(t), 0, sq(c.caFile, c.password, "op_timeout 500ms\n\t\tlease_ttl 3s"), fmt.Sprintf(fenceUpstream, b.addr))
			req, _ := http.NewRequest("GET", in.url("/"), nil)
			req.Header.Set("Cookie", "PHPSESSID="+newSessionID())
			resp, err := clusterClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readBody(resp)
			errors := metric(t, in, `caddy_session_queue_redis_errors_total{op="acquire",zone="default"}`)
			var warning string
			waitUntil(t, func() bool {
				logged, _ := os.ReadFile(in.log)
				for line := range strings.SplitSeq(string(logged), "\n") {
					if strings.Contains(line, `"warn"`) && strings.Contains(line, "redis unavailable") {
						warning = line
						return true
					}
				}
				return false
			})
			t.Logf("%s: %s (Retry-After %s), %v acquire errors counted; logged: %s", c.name, resp.Status, resp.Header.Get("Retry-After"), errors, warning)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || errors < 1 {
				t.Fatal("want 503 with Retry-After, and the error counted")
			}
			if !strings.Contains(warning, c.logged) {
				t.Fatalf("the warning does not say why Redis is unavailable (want %q in it)", c.logged)
			}
			if _, _, _, sessions := b.counts(); sessions != 0 {
				t.Fatal("a request reached the backend without a lease")
			}
		})
	}
}
