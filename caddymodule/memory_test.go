package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// liveBytes is the heap in use plus the goroutine stacks, after a GC.
func liveBytes() (heap, stacks uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// BenchmarkMemoryPerSessionAndWaiter measures what the handler keeps per
// active session (a request holding its turn) and per waiting request:
// 10,000 sessions each get a holder, then 4 waiters each. B/ counts the
// goroutine stack of each request, which Caddy's server runs for every
// request anyway, and heapB/ what is left without it: the handler's own
// state (the requests themselves are made beforehand). Run with
// -benchtime 1x: it is a measurement, not a loop.
func BenchmarkMemoryPerSessionAndWaiter(b *testing.B) {
	const sessions, waiters = 10_000, 4
	for b.Loop() {
		h := &Handler{Zone: "memory", MaxWaiting: waiters}
		if _, err := provisionIn(b, h); err != nil {
			b.Fatal(err)
		}
		release := make(chan struct{})
		var holding sync.WaitGroup
		holding.Add(sessions)
		hold := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			holding.Done()
			<-release
			return nil
		})
		pass := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
		// The requests are made beforehand: what is measured is what
		// serving them adds.
		type request struct {
			r *http.Request
			w *httptest.ResponseRecorder
		}
		requests := make([][]request, sessions)
		for i := range requests {
			for range 1 + waiters {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Cookie", fmt.Sprintf("PHPSESSID=memory%026d", i))
				r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
				requests[i] = append(requests[i], request{r, httptest.NewRecorder()})
			}
		}
		var done sync.WaitGroup
		serve := func(req request, next caddyhttp.Handler) {
			done.Go(func() {
				if err := h.ServeHTTP(req.w, req.r, next); err != nil {
					b.Error(err)
				}
			})
		}

		heap0, stack0 := liveBytes()
		for i := range sessions {
			serve(requests[i][0], hold)
		}
		holding.Wait()
		heap1, stack1 := liveBytes()
		for i := range sessions {
			for _, req := range requests[i][1:] {
				serve(req, pass)
			}
		}
		for {
			if _, waiting := h.zone.table.Stats(); waiting == sessions*waiters {
				break
			}
			time.Sleep(time.Millisecond)
		}
		heap2, stack2 := liveBytes()
		close(release)
		done.Wait()

		perSession := float64(heap1+stack1-heap0-stack0) / sessions
		perWaiter := float64(heap2+stack2-heap1-stack1) / (sessions * waiters)
		b.ReportMetric(perSession, "B/session")
		b.ReportMetric(float64(heap1-heap0)/sessions, "heapB/session")
		b.ReportMetric(perWaiter, "B/waiter")
		b.ReportMetric(float64(heap2-heap1)/(sessions*waiters), "heapB/waiter")
	}
}
