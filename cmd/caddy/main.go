// Command caddy is Caddy's standard main with the session_queue module
// compiled in. `make build` produces bin/caddy from it.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/sessionqueue/caddy-session-queue"
)

func main() {
	caddycmd.Main()
}
