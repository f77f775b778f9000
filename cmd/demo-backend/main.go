// Command demo-backend behaves like a legacy application with a
// non-locking session store (phpredis' default, memcached, CGI::Session):
// each request reads its session, works a little, and writes the whole
// session back. Concurrent requests of one session therefore overwrite each
// other's updates, which is what session_queue prevents.
//
//	GET /incr     add one to the session's counter and print it
//	GET /count    print the counter without changing it
//
// A request without a PHPSESSID cookie gets a new session.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net/http"
	"sync"
	"time"
)

type store struct {
	mu       sync.Mutex
	counters map[string]int
}

// load and save each hold the lock only for the map access, exactly like a
// session handler that reads on session_start and writes on shutdown.
func (s *store) load(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters[id]
}

func (s *store) save(id string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters[id] = n
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on")
	work := flag.Duration("work", 50*time.Millisecond, "time spent between reading and writing the session")
	flag.Parse()

	s := &store{counters: make(map[string]int)}
	session := func(w http.ResponseWriter, r *http.Request) string {
		if c, err := r.Cookie("PHPSESSID"); err == nil && c.Value != "" {
			return c.Value
		}
		id := rand.Text()
		http.SetCookie(w, &http.Cookie{Name: "PHPSESSID", Value: id, Path: "/", HttpOnly: true})
		return id
	}
	http.HandleFunc("GET /incr", func(w http.ResponseWriter, r *http.Request) {
		id := session(w, r)
		n := s.load(id)
		time.Sleep(*work) // the page's real work, with the session open
		s.save(id, n+1)
		fmt.Fprintln(w, n+1)
	})
	http.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, s.load(session(w, r)))
	})
	log.Printf("demo backend on http://%s (work %s between session read and write)", *listen, *work)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
