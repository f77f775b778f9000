// Package sessionqueue is the root of caddy-session-queue, a Caddy v2 HTTP
// handler that serializes the requests of one user session in front of legacy
// PHP and Perl applications.
//
// Import this path in a Caddy build (xcaddy build --with
// github.com/sessionqueue/caddy-session-queue) to register the
// http.handlers.session_queue module and the session_queue directive; the
// implementation lives in the caddymodule package.
package sessionqueue

import _ "github.com/sessionqueue/caddy-session-queue/caddymodule"
