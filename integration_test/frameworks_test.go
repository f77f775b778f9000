package integration_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

// Real frameworks behind the proxy: Laravel 8 (Debian's
// php-laravel-framework) with its stock web middleware, Symfony's
// HttpFoundation sessions in redis, and Perl's Plack::Middleware::Session
// as FastCGI. None of them locks a session, so concurrent requests of one
// session lose updates; Laravel also encrypts its session cookie.

// laravelAppKeyEnv is the environment variable the Caddy configs read
// Laravel's APP_KEY from, as `decrypt laravel {env.…}`.
const laravelAppKeyEnv = "SQ_TEST_LARAVEL_APP_KEY"

// frameworkPHP is a private PHP-FPM serving testdata/laravel (pools with
// the session drivers redis and file) and testdata/symfony.
type frameworkPHP struct {
	laravelRedis, laravelFile, symfony string
}

// frameworkPool is one pool section of the PHP-FPM config; %[1]s is the
// pool's name, %[2]s the temp dir, %[3]s the user lines, %[4]s the env
// lines.
const frameworkPool = `
[%[1]s]
%[3]s
listen = %[2]s/fpm-%[1]s.sock
pm = static
pm.max_children = 4
catch_workers_output = yes
decorate_workers_output = no
%[4]s`

// startFrameworkPHP starts a private redis and a PHP-FPM with the pools
// laravel-redis, laravel-file and symfony. Laravel's APP_KEY is made
// afresh and put in laravelAppKeyEnv for Caddy.
func startFrameworkPHP(t *testing.T) *frameworkPHP {
	t.Helper()
	fpm := lookBinary(t, "php-fpm", "/usr/sbin/php-fpm*", "/usr/local/sbin/php-fpm*")
	dir := backendDir(t)
	redisSock := startRedis(t, dir)
	appKey := newLaravelAppKey(t)

	users := ""
	args := []string{fpm, "--nodaemonize", "--fpm-config", filepath.Join(dir, "php-fpm.conf"), "--php-ini", filepath.Join(dir, "php.ini")}
	if os.Geteuid() == 0 {
		users = "user = root\ngroup = root"
		args = append(args, "--allow-to-run-as-root")
	}
	config := fmt.Sprintf("[global]\npid = %[1]s/php-fpm.pid\nerror_log = %[1]s/php-fpm-error.log\nlog_level = notice\ndaemonize = no\n", dir)
	for _, driver := range []string{"redis", "file"} {
		// Laravel writes its storage and bootstrap caches; the testdata
		// app is read-only to it.
		storage := filepath.Join(dir, "laravel-"+driver)
		for _, sub := range []string{"framework/sessions", "framework/views", "cache", "logs"} {
			if err := os.MkdirAll(filepath.Join(storage, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		env := []string{
			"APP_KEY = " + appKey,
			"SESSION_DRIVER = " + driver,
			"REDIS_SOCKET = " + redisSock,
			"LARAVEL_STORAGE = " + storage,
		}
		for _, cache := range []string{"packages", "services", "config", "routes", "events"} {
			env = append(env, fmt.Sprintf("APP_%s_CACHE = %s/cache/%s.php", strings.ToUpper(cache), storage, cache))
		}
		config += fmt.Sprintf(frameworkPool, "laravel-"+driver, dir, users, fpmEnv(env))
	}
	config += fmt.Sprintf(frameworkPool, "symfony", dir, users, fpmEnv([]string{"REDIS_SOCKET = " + redisSock}))
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), config)
	writeFile(t, filepath.Join(dir, "php.ini"), phpIni)
	b := &frameworkPHP{
		laravelRedis: filepath.Join(dir, "fpm-laravel-redis.sock"),
		laravelFile:  filepath.Join(dir, "fpm-laravel-file.sock"),
		symfony:      filepath.Join(dir, "fpm-symfony.sock"),
	}
	startBackend(t, dir, "php-fpm", b.laravelRedis, []string{filepath.Join(dir, "php-fpm-error.log")}, args...)
	return b
}

// fpmEnv writes "NAME = value" pairs as a pool's env lines, the values
// quoted: FPM's ini syntax refuses an "=" in a bare value, and base64 keys
// end in one.
func fpmEnv(vars []string) string {
	var sb strings.Builder
	for _, v := range vars {
		name, value, _ := strings.Cut(v, " = ")
		fmt.Fprintf(&sb, "env[%s] = \"%s\"\n", name, value)
	}
	return sb.String()
}

// newLaravelAppKey makes an APP_KEY as `php artisan key:generate` does,
// puts it in laravelAppKeyEnv, and has the test harness decrypt
// laravel_session cookies with it, so that the session IDs inside are
// searched for in Caddy's log too, as is the key itself.
func newLaravelAppKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	key := "base64:" + base64.StdEncoding.EncodeToString(raw)
	t.Setenv(laravelAppKeyEnv, key)
	laravel, err := idgen.NewLaravel([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	laravelCookies.Store(laravel)
	seenIDs.Store(key, true)
	seenIDs.Store(strings.TrimPrefix(key, "base64:"), true)
	return key
}

// laravelSite serves testdata/laravel through the pool, with sessionQueue
// in front ("" for plain Caddy).
func laravelSite(t *testing.T, pool, sessionQueue string) string {
	return siteBlock(sessionQueue, "root * "+testdataDir(t, "laravel/public"), "php_fastcgi unix/"+pool)
}

// laravelQueue is the session_queue that Laravel needs: its cookie, and
// its key to decrypt it.
func laravelQueue(zone string) string {
	return "session_queue {\n\tcookies laravel_session\n\tdecrypt laravel {env." + laravelAppKeyEnv + "}\n\tzone " + zone + "\n}"
}

// lostUpdatesPlainAndQueued runs the increment race through plain Caddy,
// which must lose updates (or the test proves nothing), then through the
// site with session_queue, which must lose none.
func lostUpdatesPlainAndQueued(t *testing.T, plainSite, queuedSite, cookieName string) {
	t.Helper()
	loadCaddyfile(t, plainSite)
	_, plain := incrementRace(t, "/start", "/incr", "/read", cookieName, lostUpdateRequests)
	t.Logf("plain Caddy: counter %d after %d concurrent increments", plain, lostUpdateRequests)
	if plain >= lostUpdateRequests {
		t.Fatalf("plain Caddy: counter %d, want < %d: the backend did not lose updates, so this test proves nothing", plain, lostUpdateRequests)
	}

	loadCaddyfile(t, queuedSite)
	replies, queued := incrementRace(t, "/start", "/incr", "/read", cookieName, lostUpdateRequests)
	t.Logf("session_queue: counter %d after %d concurrent increments", queued, lostUpdateRequests)
	checkSerialIncrements(t, replies, lostUpdateRequests)
	if queued != lostUpdateRequests {
		t.Errorf("session_queue: counter %d, want %d", queued, lostUpdateRequests)
	}
}

// TestLaravelLostUpdates: a stock Laravel 8 app, whose EncryptCookies
// encrypts the session cookie afresh on every response. Without decrypt
// every request passes unqueued (counted as too_long); with
// `decrypt laravel` each increment counts, with both session drivers.
func TestLaravelLostUpdates(t *testing.T) {
	b := startFrameworkPHP(t)
	for _, pool := range []struct{ driver, socket string }{{"redis", b.laravelRedis}, {"file", b.laravelFile}} {
		t.Run(pool.driver, func(t *testing.T) {
			loadCaddyfile(t, laravelSite(t, pool.socket, "session_queue {\n\tcookies laravel_session\n\tzone undecrypted\n}"))
			_, undecrypted := incrementRace(t, "/start", "/incr", "/read", "laravel_session", lostUpdateRequests)
			tooLong := adminZoneNamed(t, "undecrypted").Unqueued["too_long"]
			t.Logf("session_queue without decrypt: counter %d after %d concurrent increments, %d requests unqueued as too_long",
				undecrypted, lostUpdateRequests, tooLong)
			if tooLong < lostUpdateRequests {
				t.Errorf("without decrypt: %d requests counted as too_long, want at least %d", tooLong, lostUpdateRequests)
			}

			zone := "laravel-" + pool.driver
			lostUpdatesPlainAndQueued(t, laravelSite(t, pool.socket, ""), laravelSite(t, pool.socket, laravelQueue(zone)), "laravel_session")
			z := adminZoneNamed(t, zone)
			if z.Regenerations != 0 || z.Unqueued["too_long"]+z.Unqueued["undecryptable"] != 0 {
				t.Errorf("with decrypt: %d regenerations, unqueued %v; a re-encrypted cookie is neither", z.Regenerations, z.Unqueued)
			}
		})
	}
}

// laravelBrowser plays a logged-in user's page on the Laravel app: after
// logging in, it sends requests in bursts of burst that share one cookie
// jar, so each carries whatever session cookie the jar held when it left.
// Every relogEvery-th request logs in again, which gives the session a new
// ID and deletes the old session at once, as Laravel's login does; the
// others are the page's AJAX calls, which answer who is logged in. It
// returns how many of those found nobody, and how many requests failed:
// through plain Caddy, Laravel's file driver can fail a request outright
// when the session file it found is deleted by a login before it reads it.
func laravelBrowser(t *testing.T, requests, burst, relogEvery int) (anonymous int, failed []string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: client.Timeout, Transport: client.Transport}
	fetchBody := func(path string) (string, error) {
		resp, err := browser.Get(caddyAddr + path)
		if err != nil {
			return "", err
		}
		body := strings.TrimSpace(readBody(resp))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
		}
		return body, nil
	}
	if who, err := fetchBody("/login?user=alice"); err != nil || who != "alice" {
		t.Fatalf("login: %q, %v", who, err)
	}
	var mu sync.Mutex
	for sent := 0; sent < requests; sent += burst {
		var wg sync.WaitGroup
		for i := sent; i < sent+burst && i < requests; i++ {
			path := "/whoami"
			if (i+1)%relogEvery == 0 {
				path = "/login?user=alice"
			}
			wg.Go(func() {
				who, err := fetchBody(path)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err.Error())
				} else if who == "anonymous" {
					anonymous++
				}
			})
		}
		wg.Wait()
	}
	return anonymous, failed
}

// TestLaravelLoginRegenerationFollowed: Laravel's login regenerates the
// session ID and deletes the old session while the page's other requests
// still carry the old cookie: through plain Caddy they find no user. With
// decrypt, session_queue sees the new ID inside the new cookie, and sends
// the requests that carried the old one up with the new ID, encrypted as
// Laravel reads it; a cookie re-encrypted with the same ID is no
// regeneration.
func TestLaravelLoginRegenerationFollowed(t *testing.T) {
	b := startFrameworkPHP(t)
	for _, pool := range []struct{ driver, socket string }{{"redis", b.laravelRedis}, {"file", b.laravelFile}} {
		t.Run(pool.driver, func(t *testing.T) {
			const requests, burst, relogEvery = 40, 10, 5
			loadCaddyfile(t, laravelSite(t, pool.socket, ""))
			anonymous, failed := laravelBrowser(t, requests, burst, relogEvery)
			t.Logf("plain Caddy, %s: %d of %d replies logged out, %d failed", pool.driver, anonymous, requests, len(failed))
			if anonymous+len(failed) == 0 {
				t.Fatalf("plain Caddy, %s: nobody was logged out, so this test proves nothing", pool.driver)
			}

			zone := "laravel-login-" + pool.driver
			loadCaddyfile(t, laravelSite(t, pool.socket, laravelQueue(zone)))
			anonymous, failed = laravelBrowser(t, requests, burst, relogEvery)
			z := adminZoneNamed(t, zone)
			t.Logf("session_queue, %s: %d of %d replies logged out, %d failed; %d regenerations followed",
				pool.driver, anonymous, requests, len(failed), z.Regenerations)
			if anonymous != 0 || len(failed) != 0 {
				t.Errorf("session_queue, %s: %d replies logged out, failures %q; want none", pool.driver, anonymous, failed)
			}
			// Each login in the bursts gave a new ID (the first login
			// carried no cookie: its ID was issued, not regenerated); every
			// other response re-encrypted the same one.
			if want := uint64(requests / relogEvery); z.Regenerations != want {
				t.Errorf("session_queue, %s: %d regenerations, want %d", pool.driver, z.Regenerations, want)
			}
		})
	}
}

// TestLaravelUndecryptableCookiePassesThrough: a forged or truncated
// laravel_session is not a session to Laravel: it is passed on unharmed
// (Laravel starts a new session) and counted as undecryptable.
func TestLaravelUndecryptableCookiePassesThrough(t *testing.T) {
	b := startFrameworkPHP(t)
	loadCaddyfile(t, laravelSite(t, b.laravelRedis, laravelQueue("laravel-forged")))
	cookie := startSession(t, "/start", "laravel_session")
	if n := readCounter(t, "/incr", cookie); n != 1 {
		t.Fatalf("genuine cookie: counter %d, want 1", n)
	}
	value := strings.TrimPrefix(cookie, "laravel_session=")
	forged := base64.StdEncoding.EncodeToString([]byte(`{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","value":"AAAAAAAAAAAAAAAAAAAAAA==","mac":"` +
		strings.Repeat("0", 64) + `","tag":""}`))
	for _, bad := range []string{value[:len(value)/2], forged} {
		// Laravel reads the cookie as none: a new session, counter 0.
		if n := readCounter(t, "/read", "laravel_session="+bad); n != 0 {
			t.Errorf("undecryptable cookie: counter %d, want a new session's 0", n)
		}
	}
	z := adminZoneNamed(t, "laravel-forged")
	t.Logf("unqueued: %v", z.Unqueued)
	if z.Unqueued["undecryptable"] != 2 {
		t.Errorf("unqueued[undecryptable] = %d, want 2", z.Unqueued["undecryptable"])
	}
}

// TestSymfonyRedisLostUpdates: Symfony's RedisSessionHandler takes no
// lock; session_queue with its defaults (PHPSESSID) makes every increment
// count.
func TestSymfonyRedisLostUpdates(t *testing.T) {
	b := startFrameworkPHP(t)
	site := func(sessionQueue string) string {
		return siteBlock(sessionQueue, "root * "+testdataDir(t, "symfony"), "php_fastcgi unix/"+b.symfony)
	}
	lostUpdatesPlainAndQueued(t, site(""), site("session_queue"), "PHPSESSID")
}

// startPlack starts fpmWorkers single-process FastCGI servers of
// testdata/plack/app.psgi (plackup -s FCGI), sharing one session store, and
// returns their sockets. FCGI::ProcManager (--nproc) is not used: a SIGTERM
// that reaches one of its workers as it finishes a request is lost (it
// checks for the signal, then blocks in accept), and the worker outlives
// the test.
func startPlack(t *testing.T) []string {
	t.Helper()
	plackup := lookBinary(t, "plackup", "/usr/bin/plackup")
	dir := backendDir(t)
	sessions := filepath.Join(dir, "sessions")
	if err := os.Mkdir(sessions, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SQ_PLACK_SESSIONS", sessions)
	var socks []string
	for i := range fpmWorkers {
		sock := filepath.Join(dir, fmt.Sprintf("plack%d.sock", i))
		startBackend(t, dir, fmt.Sprintf("plack-fcgi-%d", i), sock, nil, plackup, "-s", "FCGI", "-E", "deployment",
			"--listen", sock, "--manager", "", filepath.Join(testdataDir(t, "plack"), "app.psgi"))
		socks = append(socks, sock)
	}
	return socks
}

// plackSite proxies to the Plack FastCGI servers, round robin, with
// sessionQueue in front.
func plackSite(socks []string, sessionQueue string) string {
	upstreams := "unix/" + strings.Join(socks, " unix/")
	return siteBlock(sessionQueue, "reverse_proxy "+upstreams+" {\n\tlb_policy round_robin\n\ttransport fastcgi\n}")
}

// TestPlackSessionLostUpdates: Plack::Middleware::Session reads the session
// when a request starts and stores it when it ends; session_queue on its
// cookie, plack_session, makes every increment count.
func TestPlackSessionLostUpdates(t *testing.T) {
	socks := startPlack(t)
	lostUpdatesPlainAndQueued(t, plackSite(socks, ""), plackSite(socks, "session_queue {\n\tcookies plack_session\n\tdecoding plack\n}"), "plack_session")
}

// TestPlackDecodingAgainstCraftedCookies: a client that puts a cookie
// "plack.session" of its own before its real plack_session gets its
// requests past PHP's rules, which read "." as "_" and take the first;
// Plack reads the real one. `decoding plack` reads it as Plack does.
func TestPlackDecodingAgainstCraftedCookies(t *testing.T) {
	socks := startPlack(t)
	race := func() int {
		cookie := startSession(t, "/start", "plack_session")
		var wg sync.WaitGroup
		for range lostUpdateRequests {
			wg.Go(func() {
				decoy := make([]byte, 20)
				rand.Read(decoy)
				if r := fetch(t, "/incr", fmt.Sprintf("plack.session=%x; %s", decoy, cookie)); r.err != nil || r.status != http.StatusOK {
					t.Errorf("increment: %v", r)
				}
			})
		}
		wg.Wait()
		return readCounter(t, "/read", cookie)
	}
	loadCaddyfile(t, plackSite(socks, "session_queue {\n\tcookies plack_session\n}"))
	php := race()
	t.Logf("decoding php: counter %d after %d concurrent increments with a decoy cookie", php, lostUpdateRequests)
	if php >= lostUpdateRequests {
		t.Fatalf("decoding php: counter %d, want < %d: the decoy got nothing past the queue, so this test proves nothing", php, lostUpdateRequests)
	}
	loadCaddyfile(t, plackSite(socks, "session_queue {\n\tcookies plack_session\n\tdecoding plack\n}"))
	plack := race()
	t.Logf("decoding plack: counter %d after %d concurrent increments with a decoy cookie", plack, lostUpdateRequests)
	if plack != lostUpdateRequests {
		t.Errorf("decoding plack: counter %d, want %d", plack, lostUpdateRequests)
	}
}
