package integration_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// loadCaddyfileOptions is loadCaddyfile with more lines for the global
// options block (a servers block, TLS storage...). A one-line option
// replaces the test default of the same name.
func loadCaddyfileOptions(t testing.TB, options, sites string) {
	t.Helper()
	var global strings.Builder
	for line := range strings.Lines(fmt.Sprintf(globalOptions, "1ns", caddyLog)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if line == "}\n" {
			global.WriteString(options)
		} else if strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && strings.Contains(options, "\t"+name+" ") {
			continue
		}
		global.WriteString(line)
	}
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global.String()+sites), map[string]any{"filename": "Caddyfile"})
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

// tlsOptions are the global options tlsSite needs: automatic HTTPS, which
// gets its certificate, without the redirects from the HTTP port; the
// internal CA's files go to storageDir, not the user's data directory.
func tlsOptions(storageDir string) string {
	return "\tauto_https disable_redirects\n\tstorage file_system " + storageDir + "\n"
}

// loadTLSCaddyfile loads tlsSite(site) and waits until it serves TLS:
// Caddy obtains the certificate in the background after the config has
// started, and a handshake before that fails.
func loadTLSCaddyfile(t *testing.T, storageDir, site string) {
	t.Helper()
	loadCaddyfileOptions(t, tlsOptions(storageDir), tlsSite(site))
	addr := strings.TrimPrefix(caddyTLSAddr, "https://")
	deadline := time.Now().Add(backendStartTimeout)
	for {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake with %s within %v: %v", addr, backendStartTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tlsSite turns a site of siteBlock into the same site on caddyTLSAddr,
// with a certificate from Caddy's internal CA.
func tlsSite(site string) string {
	return strings.Replace(site, ":9080 {\n", strings.TrimPrefix(caddyTLSAddr, "https://")+" {\n\ttls internal\n", 1)
}
