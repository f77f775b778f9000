package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the session_queue app. It has no configuration of its own: Caddy
// loads one, empty, for each config that has session_queue handlers, and
// the handlers contribute their zones' settings to it as they are
// provisioned. It decides when those settings take effect.
//
// The zones themselves (their queues, regeneration links and counters) are
// shared by every config that uses them, so that a reload keeps queued
// requests in place; what belongs to one config is only the settings. A
// config's settings must not take effect before it runs, as a reload that
// fails must leave the running zones exactly as they were. Caddy loads a
// new config in this order (caddy.go, unsyncedDecodeAndRun):
//
//  1. The new config is provisioned: handlers join their zones here.
//  2. Its apps are started, in no fixed order. When one fails, those
//     already started are stopped, and the config is canceled (its
//     modules cleaned up); the old config runs on untouched.
//  3. The new config becomes the running one; only then is the old one
//     stopped, then cleaned up.
//
// So Start alone cannot apply the settings (the http app may still fail
// after it). Instead Start claims each zone: a zone that no running config
// owns takes the settings at once, and a zone owned by the running config
// records them for its successor. When the owner's Stop comes, in step 3,
// the successor takes the zone over and its settings take effect. A
// successor that is stopped or cleaned up without having taken over (a
// failed start) is forgotten with its settings. Across reloads the newest
// running config's settings are thus in force; a config that only
// validates (`caddy validate`, `caddy adapt --validate`) is never started
// and changes nothing.
type App struct {
	zones map[string]*zoneUse
}

// zoneUse is one zone a config uses, with the settings its handlers agree
// on.
type zoneUse struct {
	zone     *zone
	settings zoneSettings
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "session_queue",
		New: func() caddy.Module { return new(App) },
	}
}

// join returns the named zone for a handler of this config with the given
// settings. The handlers of one zone in one config must agree on them:
// when two differ, which one is meant cannot be guessed.
func (a *App) join(name string, settings zoneSettings) (*zone, error) {
	if use, ok := a.zones[name]; ok {
		if diff := settings.differ(use.settings); diff != "" {
			return nil, fmt.Errorf("session_queue: zone %q: %s in another session_queue handler of this config", name, diff)
		}
		return use.zone, nil
	}
	z, err := acquireZone(name, settings)
	if err != nil {
		return nil, fmt.Errorf("session_queue: zone %q: %v", name, err)
	}
	if a.zones == nil {
		a.zones = make(map[string]*zoneUse)
	}
	a.zones[name] = &zoneUse{zone: z, settings: settings}
	return z, nil
}

// Start claims the config's zones; see App.
func (a *App) Start() error {
	for _, use := range a.zones {
		use.zone.claim(a, use.settings)
	}
	return nil
}

// Stop gives the zones up: to the config replacing this one, or, when this
// one failed to start, back to the config that owns them.
func (a *App) Stop() error {
	for _, use := range a.zones {
		use.zone.withdraw(a)
	}
	return nil
}

// Cleanup leaves the zones, which the last config using one frees. Caddy
// may cancel a started config without stopping it (when it fails after
// starting its apps), so the zones are withdrawn here too. Requests still
// running in this config's handlers keep using their zone, which stays
// valid.
func (a *App) Cleanup() error {
	for name, use := range a.zones {
		use.zone.withdraw(a)
		releaseZone(name)
	}
	a.zones = nil
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
