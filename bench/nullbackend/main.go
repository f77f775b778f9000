// Command nullbackend answers every request at once with "ok": the worst
// case for a proxy's overhead, used by `make bench-load` and `make flood`.
// With -setcookie N it also sets N cookies (the session cookie among them,
// a fresh ID each time) on every response, a Set-Cookie flood.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9190", "listen address")
	setCookies := flag.Int("setcookie", 0, "Set-Cookie fields per response")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range *setCookies {
			name := fmt.Sprintf("c%d", i)
			if i == 0 {
				name = "PHPSESSID"
			}
			w.Header().Add("Set-Cookie", name+"="+rand.Text()+"; Path=/")
		}
		_, _ = w.Write([]byte("ok\n"))
	})))
}
