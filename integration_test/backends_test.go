package integration_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds for real processes. They are generous because a loaded CI machine
// running -race can be slow; a healthy backend beats them by far.
const (
	// backendStartTimeout is how long a backend may take to accept on its socket.
	backendStartTimeout = 30 * time.Second
	// backendStopTimeout is how long a backend may take to exit after
	// SIGTERM before its whole process group is killed.
	backendStopTimeout = 10 * time.Second
)

// fpmWorkers is pm.max_children of each PHP-FPM pool and the number of Perl
// workers: a small pool, as the tests need to exhaust it.
const fpmWorkers = 4

// installHint ends every "binary not found" failure.
const installHint = "run integration_test/install-deps.sh as root (Debian 12)"

// backendProc is one started backend process and its logs.
type backendProc struct {
	name string
	cmd  *exec.Cmd
	logs []string // files to print if the test fails
	// exited is closed once the process has exited and been reaped.
	exited chan struct{}
	err    error // Wait's result, readable after exited is closed
}

// startBackend starts argv in its own process group with its output in
// dir/name.log, waits until socket accepts connections, and registers a
// cleanup that stops it and, if the test failed, prints its logs (the
// process's own output plus extraLogs). It fails the test if the process
// exits or does not listen within backendStartTimeout.
func startBackend(t *testing.T, dir, name, socket string, extraLogs []string, argv ...string) *backendProc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer logFile.Close() // the child has its own copy of the descriptor

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A process group of its own lets the fallback SIGKILL reach the
	// backend's workers too; Pdeathsig takes the backend down if the test
	// binary dies without running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &backendProc{name: name, cmd: cmd, logs: append([]string{logPath}, extraLogs...), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s (%s): %v", name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.printLogs(t)
		}
	})
	p.waitListening(t, socket)
	return p
}

// waitListening polls until socket accepts a connection. Polling is the
// only way to learn that a foreign process is ready.
func (p *backendProc) waitListening(t *testing.T, socket string) {
	t.Helper()
	deadline := time.Now().Add(backendStartTimeout)
	for {
		conn, err := net.Dial("unix", socket)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept on %s within %v: %v", p.name, socket, backendStartTimeout, err)
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before listening on %s: %v", p.name, socket, p.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to the backend's main process so it can stop its
// workers in order; if it has not exited after backendStopTimeout, its whole
// process group gets SIGKILL. The group is signalled only while its leader
// has not been reaped, so the ID still names our process group.
func (p *backendProc) stop(t *testing.T) {
	pid := p.cmd.Process.Pid
	select {
	case <-p.exited:
		t.Logf("%s (pid %d) had already exited: %v", p.name, pid, p.err)
		return
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("SIGTERM %s (pid %d): %v", p.name, pid, err)
	}
	select {
	case <-p.exited:
		return
	case <-time.After(backendStopTimeout):
	}
	t.Errorf("%s (pid %d) ignored SIGTERM for %v; killing its process group", p.name, pid, backendStopTimeout)
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("SIGKILL process group %d: %v", pid, err)
	}
	<-p.exited
}

func (p *backendProc) printLogs(t *testing.T) {
	for _, path := range p.logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("--- %s log %s: %v", p.name, path, err)
			continue
		}
		t.Logf("--- %s log %s:\n%s", p.name, path, b)
	}
}

// backendDir makes a short-named temp dir for sockets and state. A unix
// socket path must fit in 108 bytes, which t.TempDir's long test-named paths
// can exceed.
func backendDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sqit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// lookBinary finds a program on PATH or in the given fallback globs (highest
// match first, so the newest installed versioned binary wins), and fails the
// test when there is none: CI treats a skip as a failure, and so do we.
func lookBinary(t *testing.T, name string, globs ...string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		slices.Sort(matches)
		slices.Reverse(matches)
		for _, m := range matches {
			if info, err := os.Stat(m); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
				return m
			}
		}
	}
	t.Fatalf("%s not found on PATH or in %v; %s", name, globs, installHint)
	return ""
}

// testdataDir returns the absolute path of testdata/sub, which backends
// need because they do not run in the test's working directory.
func testdataDir(t *testing.T, sub string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", sub))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// startRedis starts a private redis-server listening only on a unix socket
// in dir, with no persistence, and returns the socket path.
func startRedis(t *testing.T, dir string) string {
	t.Helper()
	sock, _ := startRedisProc(t, dir)
	return sock
}

// startRedisProc is startRedis that also returns the process, for tests
// that kill it.
func startRedisProc(t *testing.T, dir string) (string, *backendProc) {
	t.Helper()
	return startRedisWith(t, dir, "redis")
}

// startRedisWith starts a redis-server without persistence on a unix
// socket in dir, with extra options.
func startRedisWith(t *testing.T, dir, name string, extra ...string) (string, *backendProc) {
	t.Helper()
	bin := lookBinary(t, "redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server")
	sock := filepath.Join(dir, "redis.sock")
	argv := append([]string{bin,
		"--port", "0",
		"--unixsocket", sock,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--logfile", ""}, extra...)
	return sock, startBackend(t, dir, name, sock, nil, argv...)
}

// phpBackend is a private PHP-FPM with two pools serving testdata/php.
type phpBackend struct {
	// stateDir is SQ_STATE_DIR of the scripts (trackers, release files).
	stateDir string
	// redisPool's sessions live in the private redis, with phpredis's
	// session locking off, as it ships: concurrent requests lose updates.
	redisPool string
	// filesPool uses PHP's default files handler, which flocks the session
	// file for the whole request.
	filesPool string
	// dir, fpm, fpmArgs and redis let fault tests kill and restart the
	// backends.
	dir     string
	fpm     *backendProc
	fpmArgs []string
	redis   *backendProc
}

// fpmConfig is the php-fpm configuration; %[1]s is the temp dir, %[2]s the
// redis socket, %[3]s the pool's user lines (needed only as root).
const fpmConfig = `[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm-error.log
log_level = notice
daemonize = no

[redis]
%[3]s
listen = %[1]s/fpm-redis.sock
pm = static
pm.max_children = 4
catch_workers_output = yes
decorate_workers_output = no
env[SQ_STATE_DIR] = %[1]s/state
php_admin_value[session.save_handler] = redis
php_admin_value[session.save_path] = "unix://%[2]s"

[files]
%[3]s
listen = %[1]s/fpm-files.sock
pm = static
pm.max_children = 4
catch_workers_output = yes
decorate_workers_output = no
env[SQ_STATE_DIR] = %[1]s/state
php_admin_value[session.save_handler] = files
php_admin_value[session.save_path] = %[1]s/sessions
`

// phpIni replaces the distribution's php.ini (the conf.d scan dir still
// loads the extensions, among them redis). Output is unbuffered so that
// flush() reaches Caddy at once; session GC is off so that no request
// stalls sweeping the session store.
const phpIni = `display_errors = Off
log_errors = On
error_reporting = E_ALL
output_buffering = 0
session.gc_probability = 0
`

// startPHP starts a private redis and a PHP-FPM with the "redis" and
// "files" pools, both serving testdata/php.
func startPHP(t *testing.T) *phpBackend {
	t.Helper()
	fpm := lookBinary(t, "php-fpm", "/usr/sbin/php-fpm*", "/usr/local/sbin/php-fpm*")
	dir := backendDir(t)
	redisSock, redis := startRedisProc(t, dir)

	b := &phpBackend{
		dir:       dir,
		redis:     redis,
		stateDir:  filepath.Join(dir, "state"),
		redisPool: filepath.Join(dir, "fpm-redis.sock"),
		filesPool: filepath.Join(dir, "fpm-files.sock"),
	}
	for _, d := range []string{b.stateDir, filepath.Join(dir, "sessions")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{fpm, "--nodaemonize", "--fpm-config", filepath.Join(dir, "php-fpm.conf"), "--php-ini", filepath.Join(dir, "php.ini")}
	users := ""
	if os.Geteuid() == 0 {
		// As root, FPM wants to know whom the workers run as and refuses
		// root unless told -R; the test's own files are root's.
		users = "user = root\ngroup = root"
		args = append(args, "--allow-to-run-as-root")
	}
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), fmt.Sprintf(fpmConfig, dir, redisSock, users))
	writeFile(t, filepath.Join(dir, "php.ini"), phpIni)
	b.fpmArgs = args
	b.startFPM(t)
	return b
}

// startFPM starts the php-fpm master and its pools.
func (b *phpBackend) startFPM(t *testing.T) {
	t.Helper()
	b.fpm = startBackend(t, b.dir, "php-fpm", b.redisPool, []string{filepath.Join(b.dir, "php-fpm-error.log")}, b.fpmArgs...)
	// The master opens the pools' sockets one after the other: the second
	// may not accept yet when the first does (seen under load).
	b.fpm.waitListening(t, b.filesPool)
}

// kill sends SIGKILL to p's whole process group (a php-fpm master and its
// workers) and waits until its leader is reaped.
func (p *backendProc) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	<-p.exited
}

// site returns a Caddy site serving testdata/php through the given pool,
// with sessionQueue (a session_queue directive, or "" for plain Caddy)
// in front.
func (b *phpBackend) site(t *testing.T, pool, sessionQueue string) string {
	return siteBlock(sessionQueue, "root * "+testdataDir(t, "php"), "php_fastcgi unix/"+pool)
}

// tracker is what testdata/php/lib.php's sq_track records.
type tracker struct {
	Readers       int `json:"readers"`
	Writers       int `json:"writers"`
	MaxReaders    int `json:"max_readers"`
	MaxWriters    int `json:"max_writers"`
	MaxWithWriter int `json:"max_with_writer"`
}

// track reads the tracker NAME once its requests have all finished.
func (b *phpBackend) track(t *testing.T, name string) tracker {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.stateDir, "track-"+name+".json"))
	if err != nil {
		t.Fatalf("tracker %s: %v", name, err)
	}
	var tr tracker
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatalf("tracker %s: %v in %q", name, err, data)
	}
	return tr
}

// release lets the testdata/php/hang.php requests with ?f=name finish.
func (b *phpBackend) release(t *testing.T, name string) {
	t.Helper()
	writeFile(t, filepath.Join(b.stateDir, "release-"+name), "")
}

// startPerl starts testdata/perl/app.pl with fpmWorkers pre-forked workers
// and returns its FastCGI socket; mode is the app's optional fourth
// argument ("weak-ids").
func startPerl(t *testing.T, mode ...string) string {
	t.Helper()
	perl := lookBinary(t, "perl", "/usr/bin/perl")
	dir := backendDir(t)
	sessions := filepath.Join(dir, "sessions")
	if err := os.Mkdir(sessions, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "perl.sock")
	app := filepath.Join(testdataDir(t, "perl"), "app.pl")
	// Fail with the install hint rather than a Perl "Can't locate" when a
	// module is missing.
	check := exec.Command(perl, "-MCGI::Fast", "-MCGI::Session", "-MFCGI", "-e", "1")
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("Perl modules missing: %v\n%s%s", err, out, installHint)
	}
	args := append([]string{perl, app, sock, fmt.Sprint(fpmWorkers), sessions}, mode...)
	startBackend(t, dir, "perl-fcgi", sock, nil, args...)
	return sock
}

// perlSite returns a Caddy site that proxies to the Perl FastCGI app.
// "split .pl" makes SCRIPT_NAME the script part of the path, on which the
// app dispatches; no root is needed because the app ignores SCRIPT_FILENAME.
func perlSite(sock, sessionQueue string) string {
	return siteBlock(sessionQueue, "reverse_proxy unix/"+sock+" {\n\ttransport fastcgi {\n\t\tsplit .pl\n\t}\n}")
}

// siteBlock returns the site ":9080" with the given directives (each may
// span lines; empty ones are left out), indented as "caddy fmt" would, so
// that adapting prints no formatting warning.
func siteBlock(directives ...string) string {
	var sb strings.Builder
	sb.WriteString(":9080 {\n")
	for _, d := range directives {
		if d == "" {
			continue
		}
		for line := range strings.SplitSeq(d, "\n") {
			sb.WriteString("\t" + line + "\n")
		}
	}
	sb.WriteString("}\n")
	return sb.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startSession GETs path (a script that starts a session) and returns the
// "NAME=value" Cookie header for the session cookie it set.
func startSession(t *testing.T, path, cookieName string) string {
	t.Helper()
	resp, err := get(t, path, "")
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body := readBody(resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("GET %s set no %s cookie; headers %v, body %q", path, cookieName, resp.Header, body)
	return ""
}

// reply is one finished request: status, Retry-After and body, or err.
type reply struct {
	status     int
	retryAfter string
	body       string
	err        error
}

func (r reply) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d %q (Retry-After %q)", r.status, strings.TrimSpace(r.body), r.retryAfter)
}

// fetch GETs path with the cookie and returns the whole reply.
func fetch(t *testing.T, path, cookie string) reply {
	resp, err := get(t, path, cookie)
	if err != nil {
		return reply{err: err}
	}
	return reply{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: readBody(resp)}
}

// fetchAll sends n concurrent GETs of path with the cookie and returns the
// replies in the order they finished.
func fetchAll(t *testing.T, n int, path, cookie string) []reply {
	replies := make(chan reply, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { replies <- fetch(t, path, cookie) })
	}
	wg.Wait()
	close(replies)
	var out []reply
	for r := range replies {
		out = append(out, r)
	}
	return out
}
