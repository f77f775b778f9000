// Command flood sends hostile traffic to a session_queue site and reports
// what it costs Caddy: -n requests with unique random session IDs (RSS of
// -pid every 100k), then requests at every ID length boundary, with
// oversized and many-cookie headers. Used by `make flood`.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("target", "http://127.0.0.1:9182/", "session_queue site")
	pid := flag.Int("pid", 0, "Caddy's pid, for RSS")
	n := flag.Int("n", 1_000_000, "requests with unique session IDs")
	conns := flag.Int("c", 32, "concurrent connections")
	noCookie := flag.Bool("nocookie", false, "send no cookie (for a minting site)")
	pad := flag.Int("pad", 0, "bytes of other cookies sent before the session cookie")
	every := flag.Int("every", 100_000, "requests between RSS samples")
	probes := flag.Bool("probes", true, "send the header probes after the flood")
	flag.Parse()
	tr := &http.Transport{MaxIdleConnsPerHost: *conns}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	fmt.Printf("%-10s %10s %12s\n", "requests", "RSS MiB", "req/s")
	fmt.Printf("%-10d %10.1f %12s\n", 0, rssMiB(*pid), "-")
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	start, last := time.Now(), time.Now()
	var mu sync.Mutex
	padding := ""
	if *pad > 0 {
		padding = "pad=" + strings.Repeat("p", *pad) + "; "
	}
	for range *conns {
		wg.Go(func() {
			for {
				i := sent.Add(1)
				if i > int64(*n) {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, *target, nil)
				if !*noCookie {
					req.Header.Set("Cookie", padding+"PHPSESSID="+strings.ToLower(rand.Text())[:26])
				}
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				if i%int64(*every) == 0 {
					mu.Lock()
					now := time.Now()
					fmt.Printf("%-10d %10.1f %12.0f\n", i, rssMiB(*pid), float64(*every)/now.Sub(last).Seconds())
					last = now
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("%d requests in %v, %d failed\n\n", *n, time.Since(start).Round(time.Second), failed.Load())
	if *noCookie || !*probes {
		return
	}

	probe := func(what, cookie string, extra http.Header) {
		req, _ := http.NewRequest(http.MethodGet, *target, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for k, v := range extra {
			req.Header[k] = v
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			fmt.Printf("%-44s error %v\n", what, err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%-44s %d in %v\n", what, resp.StatusCode, time.Since(t0).Round(time.Microsecond))
	}
	for _, l := range []int{1, 255, 256, 257, 4096} {
		probe(fmt.Sprintf("ID of %d bytes", l), "PHPSESSID="+strings.Repeat("a", l), nil)
	}
	probe("ID with a bad byte", "PHPSESSID=abc!def", nil)
	var many strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&many, "c%d=v; ", i)
	}
	probe("2000 cookies, then the session's", many.String()+"PHPSESSID=late0123456789", nil)
	probe("2000 cookies, no session", many.String(), nil)
	probe("Cookie header of 900 KiB", "PHPSESSID=x"+strings.Repeat("; a=b", 900*1024/5), nil)
	probe("Cookie header of 1.1 MiB", "PHPSESSID=x"+strings.Repeat("; a=b", 1100*1024/5), nil)
	lines := http.Header{"Cookie": nil}
	for i := range 500 {
		lines["Cookie"] = append(lines["Cookie"], fmt.Sprintf("f%d=v", i))
	}
	probe("500 Cookie fields", "", lines)
	fmt.Printf("RSS after the probes: %.1f MiB\n", rssMiB(*pid))
}

func rssMiB(pid int) float64 {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
