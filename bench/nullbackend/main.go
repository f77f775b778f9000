// Command nullbackend answers every request at once with "ok": the worst
// case for a proxy's overhead, used by `make bench-load` and `make flood`.
// With -setcookie N it also sets N cookies (the session cookie among them,
// a fresh ID each time) on every response, a Set-Cookie flood.
//
// It also measures handoffs: while requests come one at a time (one hot
// session behind session_queue), the gap from the end of one to the
// arrival of the next is the proxy's release of the turn, its wake-up of
// the next request and that request's trip upstream. GET /__gaps answers
// "p50_us p99_us count" of the gaps since the last call.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net/http"
	"slices"
	"sync"
	"time"
)

type gaps struct {
	mu       sync.Mutex
	inFlight int
	lastEnd  time.Time
	seen     []time.Duration
}

func (g *gaps) arrive() {
	now := time.Now()
	g.mu.Lock()
	if g.inFlight == 0 && !g.lastEnd.IsZero() {
		g.seen = append(g.seen, now.Sub(g.lastEnd))
	}
	g.inFlight++
	g.mu.Unlock()
}

func (g *gaps) leave() {
	g.mu.Lock()
	g.inFlight--
	g.lastEnd = time.Now()
	g.mu.Unlock()
}

func (g *gaps) report(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	seen := g.seen
	g.seen, g.lastEnd = nil, time.Time{}
	g.mu.Unlock()
	if len(seen) == 0 {
		fmt.Fprintln(w, "0 0 0")
		return
	}
	slices.Sort(seen)
	at := func(q float64) float64 { return float64(seen[int(q*float64(len(seen)-1))].Microseconds()) }
	fmt.Fprintf(w, "%.0f %.0f %d\n", at(0.5), at(0.99), len(seen))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9190", "listen address")
	setCookies := flag.Int("setcookie", 0, "Set-Cookie fields per response")
	flag.Parse()
	var g gaps
	mux := http.NewServeMux()
	mux.HandleFunc("GET /__gaps", g.report)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.arrive()
		defer g.leave()
		for i := range *setCookies {
			name := fmt.Sprintf("c%d", i)
			if i == 0 {
				name = "PHPSESSID"
			}
			w.Header().Add("Set-Cookie", name+"="+rand.Text()+"; Path=/")
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
