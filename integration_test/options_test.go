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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// loadCaddyfileOptions is loadCaddyfile with more lines for the global
// options block (a servers block, say).
func loadCaddyfileOptions(t testing.TB, options, sites string) {
	t.Helper()
	global := strings.TrimSuffix(fmt.Sprintf(globalOptions, "1ns", caddyLog), "}\n") + options + "}\n"
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global+sites), map[string]any{"filename": "Caddyfile"})
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.String())
	}
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v", err)
	}
	if err := loadConfig(cfg); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// headerTransport adds fixed headers to every request, as a client behind
// a proxy (or one forging what a proxy would add) sends them.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (ht headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range ht.header {
		req.Header[k] = v
	}
	return ht.next.RoundTrip(req)
}

// caddyTLSAddr is where tlsSite listens.
const caddyTLSAddr = "https://127.0.0.1:9443"

// tlsSite turns a site of siteBlock into the same site on caddyTLSAddr,
// with a certificate of its own for 127.0.0.1. The certificate is loaded
// from files, not obtained from Caddy's internal CA: that happens in the
// background while the config starts, and in Caddy v2.11.9 the event it
// emits reads the TLS app while its Start writes it (a data race that
// -race reports).
func tlsSite(t *testing.T, site string) string {
	t.Helper()
	certFile, keyFile := selfSignedCertificate(t)
	addr := strings.TrimPrefix(caddyTLSAddr, "https://")
	return strings.Replace(site, ":9080 {\n", addr+" {\n\ttls "+certFile+" "+keyFile+"\n", 1)
}

// selfSignedCertificate writes a certificate for 127.0.0.1, valid for a
// day, and its key, and returns their paths.
func selfSignedCertificate(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	return writeServerCertificate(t, backendDir(t), "server", nil, nil)
}

// writeServerCertificate writes a certificate for 127.0.0.1, valid for a
// day, signed by parent with parentKey (self-signed when parent is nil),
// and its key, as dir/name.crt and dir/name.key.
func writeServerCertificate(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}
