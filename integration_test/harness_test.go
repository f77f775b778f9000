// Package integration_test drives a real, in-process Caddy with the
// session_queue module in front of real backends. Every test in this
// package shares one Caddy (Caddy's state is process-wide), so tests run
// one at a time and each one loads the whole config it needs.
package integration_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"go.uber.org/goleak"

	_ "github.com/sessionqueue/caddy-session-queue"
	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// caddyAddr is where every test site listens; sites are written as ":9080".
const caddyAddr = "http://127.0.0.1:9080"

// globalOptions keeps the test Caddy off the user's home directory and
// certificate store; grace_period is short so a reload or stop never waits
// for a test's held-open request unless the test asks for that. Every log
// line, down to debug, goes to caddyLog, which TestMain searches for the
// session IDs the tests used.
const globalOptions = `{
	admin localhost:2999
	persist_config off
	skip_install_trust
	auto_https off
	http_port 9080
	https_port 9443
	grace_period %s
	log {
		output file %s
		level DEBUG
	}
}
`

// caddyLog is the file the test Caddy logs to.
var caddyLog string

func TestMain(m *testing.M) {
	// Caddy listens with SO_REUSEPORT, so a second test process on this
	// machine would bind the same ports without error and the kernel would
	// split the connections between the two: refuse to start instead.
	for _, addr := range []string{"127.0.0.1:9080", "127.0.0.1:2999"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration tests need %s free: %v\n", addr, err)
			os.Exit(1)
		}
		ln.Close()
	}
	logDir, err := os.MkdirTemp("", "sq-caddy-log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyLog = filepath.Join(logDir, "caddy.log")

	http.DefaultTransport = recording(http.DefaultTransport)

	code := m.Run()
	_ = caddy.Stop()
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	if err := goleak.Find(caddyBackground...); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: goroutines outlive the tests: %v\n", err)
		code = 1
	}
	if leaks := sessionIDsInLog(caddyLog); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: session IDs used by the tests appear in Caddy's log:\n%s\n", strings.Join(leaks, "\n"))
		code = 1
	} else {
		fmt.Printf("no session ID used by the tests (%d IDs) appears in Caddy's log\n", len(usedSessionIDs()))
	}
	os.RemoveAll(logDir) // os.Exit skips deferred calls
	os.Exit(code)
}

// caddyBackground are the goroutines that Caddy and its libraries start
// once per process and never stop, so they outlive caddy.Stop by design;
// every other goroutine left once the tests end is a leak.
var caddyBackground = []goleak.Option{
	// The admin endpoint: caddy.Stop stops the config, not the admin
	// server, which only the process's exit ends.
	goleak.IgnoreAnyFunction("github.com/caddyserver/caddy/v2.replaceLocalAdminServer.func2"),
	// The log file writer's rotation goroutine, one per log file opened.
	goleak.IgnoreTopFunction("github.com/DeRuina/timberjack.(*Logger).millRun"),
	// certmagic refreshes a storage lock file every few seconds until its
	// holder unlocks it; the goroutine notices and ends on its next wake.
	goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
}

// sessionCookies are the cookie names whose values the tests treat as
// session IDs, and the binding cookies, whose tokens are as secret.
var sessionCookies = []string{"PHPSESSID", "CGISESSID", "ci_session", "laravel_session", "plack_session", "sq_binding", "__Host-sq_binding"}

// laravelCookies, once a Laravel test has made its APP_KEY, decrypts
// laravel_session values, so that the session IDs inside them are searched
// for in Caddy's log too.
var laravelCookies atomic.Pointer[idgen.Laravel]

// seenIDs collects every session ID that a test client sent or received.
var seenIDs sync.Map

// minSecretLength skips the short made-up IDs of some tests ("aaa"), which
// would match log text by chance; real and generated IDs are far longer.
const minSecretLength = 10

// recordingTransport notes the session IDs on the way in and out.
type recordingTransport struct{ next http.RoundTripper }

func recording(next http.RoundTripper) http.RoundTripper { return recordingTransport{next} }

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for _, c := range req.Cookies() {
		noteSessionCookie(c)
	}
	resp, err := rt.next.RoundTrip(req)
	if err == nil {
		for _, c := range resp.Cookies() {
			noteSessionCookie(c)
		}
	}
	return resp, err
}

func noteSessionCookie(c *http.Cookie) {
	if !slices.Contains(sessionCookies, c.Name) || len(c.Value) < minSecretLength {
		return
	}
	seenIDs.Store(c.Value, true)
	if laravel := laravelCookies.Load(); laravel != nil && c.Name == "laravel_session" {
		// Laravel's cookie is URL-encoded, and PHP decodes it.
		if value, err := url.PathUnescape(c.Value); err == nil {
			if id, err := laravel.Decrypt(c.Name, value); err == nil && len(id) >= minSecretLength {
				seenIDs.Store(id, true)
			}
		}
	}
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport, so that no connection outlives the tests.
func (rt recordingTransport) CloseIdleConnections() {
	if c, ok := rt.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func usedSessionIDs() []string {
	var ids []string
	seenIDs.Range(func(k, _ any) bool {
		ids = append(ids, k.(string))
		return true
	})
	return ids
}

// sessionIDsInLog returns, for each log line holding a session ID a test
// used, where it is; the ID itself is named only by its length and first
// characters' hash, as it is a secret even here.
func sessionIDsInLog(path string) []string {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no test started the in-process Caddy
	}
	if err != nil {
		return []string{"reading Caddy's log: " + err.Error()}
	}
	ids := usedSessionIDs()
	var leaks []string
	for n, line := range strings.Split(string(data), "\n") {
		for _, id := range ids {
			if strings.Contains(line, id) {
				leaks = append(leaks, fmt.Sprintf("line %d: an ID of %d characters (hash %s): %.200s",
					n+1, len(id), idgen.Hash(id), strings.ReplaceAll(line, id, "<ID>")))
			}
		}
	}
	return leaks
}

// adaptCaddyfile turns global options plus the given site blocks into JSON.
func adaptCaddyfile(t testing.TB, gracePeriod, sites string) ([]byte, error) {
	t.Helper()
	src := fmt.Sprintf(globalOptions, gracePeriod, caddyLog) + sites
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.String())
	}
	return cfg, err
}

// loadCaddyfile (re)loads the in-process Caddy with the given site blocks and
// fails the test if the config does not adapt or start. caddy.Load returns
// only once the new config serves, so no polling is needed.
func loadCaddyfile(t testing.TB, sites string) {
	t.Helper()
	loadCaddyfileGrace(t, "1ns", sites)
}

// loadCaddyfileGrace is loadCaddyfile with an explicit grace_period, for
// tests that reload while requests are in flight.
//
// It stops the running config before starting the new one. A reload in
// place shares the listening socket between the old and the new server, and
// a connection made in the moment of the handover can be accepted by the old
// server and closed unanswered (seen as EOF or a reset by about one request
// in twenty right after caddy.Load returns); tests must not depend on that
// luck. Tests of reloading itself use reloadConfig.
func loadCaddyfileGrace(t testing.TB, gracePeriod, sites string) {
	t.Helper()
	cfg, err := adaptCaddyfile(t, gracePeriod, sites)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v", err)
	}
	if err := loadConfig(cfg); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// adminOnly is a config that serves nothing but the admin endpoint.
const adminOnly = `{"admin": {"listen": "localhost:2999"}}`

// loadConfig stops the running config, then starts cfgJSON. It returns once
// the new config serves.
func loadConfig(cfgJSON []byte) error {
	if err := caddy.Load([]byte(adminOnly), true); err != nil {
		return err
	}
	return caddy.Load(cfgJSON, true)
}

// reloadConfig replaces the running config with cfgJSON in place, as
// `caddy reload` does: the old config's requests finish during its grace
// period. It returns once the old config has stopped.
func reloadConfig(cfgJSON []byte) error {
	return caddy.Load(cfgJSON, true)
}

// loadError returns the error with which Caddy refuses the given site
// blocks, at adapt or at load, or nil when they load.
func loadError(t testing.TB, sites string) error {
	t.Helper()
	cfg, err := adaptCaddyfile(t, "1ns", sites)
	if err != nil {
		return err
	}
	return loadConfig(cfg)
}

// client talks to the test Caddy: no cookie jar (tests set Cookie headers
// themselves) and a timeout generous enough for real backends under -race.
var client = &http.Client{Timeout: 60 * time.Second, Transport: recording(&http.Transport{})}

// get sends a GET with the given Cookie header (none when empty).
func get(t testing.TB, path, cookie string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, caddyAddr+path, nil)
	if err != nil {
		return nil, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	return client.Do(req)
}

// readBody reads and closes a response body.
func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return buf.String()
}
