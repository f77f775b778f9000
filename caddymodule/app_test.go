package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/sessionqueue/caddy-session-queue/queue"
)

// zoneState is what a config sets on a zone.
func zoneState(z *zone) (maxReaders, maxWaiting int, keyPattern string) {
	limits := z.table.Limits()
	return limits.MaxReaders, limits.MaxWaiting, z.keying.epochs.Load().current.pattern.String()
}

func checkZone(t *testing.T, when string, z *zone, maxReaders, maxWaiting int, keyPattern string) {
	t.Helper()
	r, w, p := zoneState(z)
	if r != maxReaders || w != maxWaiting || p != keyPattern {
		t.Fatalf("%s: zone has max_readers %d, max_waiting %d, key_pattern %q; want %d, %d, %q",
			when, r, w, p, maxReaders, maxWaiting, keyPattern)
	}
}

// The steps below are those of caddy.go's unsyncedDecodeAndRun: provision
// the new config, start its apps, then stop and clean up the old one.
func TestZoneSettingsTakeEffectOnceTheConfigRuns(t *testing.T) {
	old := &Handler{Zone: "handover", MaxReaders: 1, MaxWaiting: 5}
	oldApp, err := provisionIn(t, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := oldApp.Start(); err != nil {
		t.Fatal(err)
	}
	checkZone(t, "old config running", old.zone, 1, 5, "")

	renewed := &Handler{Zone: "handover", MaxReaders: 3, MaxWaiting: 7, KeyPattern: "^(.+)-x$"}
	newApp, err := provisionIn(t, renewed)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.zone != old.zone {
		t.Fatal("handlers of one zone got different zones")
	}
	checkZone(t, "new config provisioned", old.zone, 1, 5, "")
	if err := newApp.Start(); err != nil {
		t.Fatal(err)
	}
	checkZone(t, "new config started, old not stopped", old.zone, 1, 5, "")
	_ = oldApp.Stop()
	checkZone(t, "old config stopped", old.zone, 3, 7, "^(.+)-x$")
	_ = oldApp.Cleanup()
	if refs, ok := zones.References("handover"); !ok || refs != 1 {
		t.Fatalf("zone references after the old config's cleanup = %d, %v; want 1", refs, ok)
	}
	_ = newApp.Stop()
	_ = newApp.Cleanup()
	if _, ok := zones.References("handover"); ok {
		t.Fatal("zone still referenced after the last config left")
	}
}

func TestFailedStartLeavesZoneAsItWas(t *testing.T) {
	running := &Handler{Zone: "failed-start", MaxReaders: 1, MaxWaiting: 5}
	runningApp, err := provisionIn(t, running)
	if err != nil {
		t.Fatal(err)
	}
	_ = runningApp.Start()

	// Another app of the new config fails after this one started: Caddy
	// stops the started apps and cancels the config.
	failed := &Handler{Zone: "failed-start", MaxReaders: 50, KeyPattern: "^(.)"}
	failedApp, err := provisionIn(t, failed)
	if err != nil {
		t.Fatal(err)
	}
	_ = failedApp.Start()
	_ = failedApp.Stop()
	_ = failedApp.Cleanup()
	checkZone(t, "after a failed start", running.zone, 1, 5, "")

	// Failing after every app started (finishSettingUp): canceled, not
	// stopped.
	canceled := &Handler{Zone: "failed-start", MaxReaders: 50}
	canceledApp, err := provisionIn(t, canceled)
	if err != nil {
		t.Fatal(err)
	}
	_ = canceledApp.Start()
	_ = canceledApp.Cleanup()
	checkZone(t, "after a config canceled once started", running.zone, 1, 5, "")

	// The running config still owns the zone and hands it to the next.
	next := &Handler{Zone: "failed-start", MaxReaders: 2, MaxWaiting: 3}
	nextApp, err := provisionIn(t, next)
	if err != nil {
		t.Fatal(err)
	}
	_ = nextApp.Start()
	_ = runningApp.Stop()
	checkZone(t, "after a good reload", running.zone, 2, 3, "")
}

func TestHandlersOfOneZoneInOneConfigMustAgree(t *testing.T) {
	tests := []struct {
		first, second Handler
		want          string
	}{
		{Handler{}, Handler{MaxReaders: 2},
			`session_queue: zone "default": max_readers 2 here but 4 in another session_queue handler of this config`},
		{Handler{MaxWaiting: 3}, Handler{},
			`session_queue: zone "default": max_waiting 256 here but 3 in another session_queue handler of this config`},
		{Handler{KeyPattern: "^(.+)$"}, Handler{},
			`session_queue: zone "default": key_pattern "" here but "^(.+)$" in another session_queue handler of this config`},
		{Handler{TrackWindow: caddy.Duration(3600e9)}, Handler{},
			`session_queue: zone "default": track_window 24h0m0s here but 1h0m0s in another session_queue handler of this config`},
	}
	for _, tt := range tests {
		ctx, err := caddy.ProvisionContext(&caddy.Config{})
		if err != nil {
			t.Fatal(err)
		}
		first, second := tt.first, tt.second
		if err := first.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		err = second.Provision(ctx)
		app, _ := ctx.App("session_queue")
		_ = app.(*App).Cleanup()
		if err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}

	// Other zones, and settings that are the handler's own, may differ.
	ctx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := ctx.App("session_queue")
	defer app.(*App).Cleanup()
	for _, h := range []*Handler{
		{Zone: "agree-a", MaxReaders: 2},
		{Zone: "agree-b", MaxReaders: 3},
		{Zone: "agree-a", MaxReaders: 2, MaxWait: caddy.Duration(1e9), Cookies: []string{"sid"}},
	} {
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A handler of an older config still serving requests after a reload
// quotes the limit the zone enforces, not its own.
func TestRefusalQuotesTheZonesLimit(t *testing.T) {
	h := &Handler{Zone: "refusal-limit", MaxWaiting: 5}
	if _, err := provisionIn(t, h); err != nil {
		t.Fatal(err)
	}
	h.zone.apply(zoneSettings{limits: queue.Limits{MaxReaders: 4, MaxWaiting: 0}})
	const id = "refusal-session-id"
	holder, _, _, err := h.zone.acquire(t.Context(), &h.zone.stripes[0], id, queue.Write, time.Now(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", "PHPSESSID="+id)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	err = h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	const want = "already has 0 requests waiting (max_waiting)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
}
