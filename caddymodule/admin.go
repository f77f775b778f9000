package caddymodule

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/sessionqueue/caddy-session-queue/idgen"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is the admin.api.session_queue module. It serves, on Caddy's
// admin endpoint:
//
//	GET /session_queue/zones                       every zone: its limits, load and counters
//	GET /session_queue/zones/{zone}/sessions?top=N the N busiest sessions of a zone (default 10)
//
// Sessions are shown by their keyed short hash only, never by ID. The
// module has no configuration: Caddy provisions every admin.api module on
// each admin (re)start, so it only reads the package's zone table.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.session_queue",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "GET /session_queue/zones", Handler: caddy.AdminHandlerFunc(a.handleZones)},
		{Pattern: "GET /session_queue/zones/{zone}/sessions", Handler: caddy.AdminHandlerFunc(a.handleSessions)},
	}
}

type zoneStatus struct {
	Zone       string `json:"zone"`
	MaxReaders int    `json:"max_readers"`
	MaxWaiting int    `json:"max_waiting"`
	// Sessions is how many sessions have requests running or waiting.
	Sessions int `json:"sessions"`
	Waiting  int `json:"waiting"`
	// Requests counts requests since the zone was created, by mode and
	// result, as caddy_session_queue_requests_total does.
	Requests      map[string]map[string]uint64 `json:"requests"`
	HoldExpired   uint64                       `json:"hold_expired"`
	Regenerations uint64                       `json:"regenerations"`
	Duplicates    uint64                       `json:"duplicates"`
	// Unqueued counts requests whose session ID could not be queued, by
	// reason, as caddy_session_queue_unqueued_total does.
	Unqueued map[string]uint64 `json:"unqueued"`
	// Cluster is this instance's part in cluster mode, if on.
	Cluster *clusterStatus `json:"cluster,omitempty"`
}

type sessionStatus struct {
	Session      string  `json:"session"`
	Readers      int     `json:"readers"`
	Writer       bool    `json:"writer"`
	Waiting      int     `json:"waiting"`
	OldestWaitMS float64 `json:"oldest_wait_ms"`
}

func (adminAPI) handleZones(w http.ResponseWriter, _ *http.Request) error {
	statuses := []zoneStatus{}
	zones.Range(func(name, value any) bool {
		z := value.(*zone)
		limits := z.table.Limits()
		sessions, waiting := z.table.Stats()
		counts := z.counts()
		requests := make(map[string]map[string]uint64, modeCount)
		for mode, modeName := range modeNames {
			byResult := make(map[string]uint64, resultCount)
			for result, resultName := range resultNames {
				byResult[resultName] = counts.requests[mode][result]
			}
			requests[modeName] = byResult
		}
		unqueued := make(map[string]uint64, unqueuedReasonCount)
		for reason, reasonName := range unqueuedReasonNames {
			unqueued[reasonName] = z.unqueued.total[reason].Load()
		}
		statuses = append(statuses, zoneStatus{
			Zone:          name.(string),
			MaxReaders:    limits.MaxReaders,
			MaxWaiting:    limits.MaxWaiting,
			Sessions:      sessions,
			Waiting:       waiting,
			Requests:      requests,
			HoldExpired:   z.holdExpired.Load(),
			Regenerations: z.regenerations.Load(),
			Duplicates:    z.duplicates.Load(),
			Unqueued:      unqueued,
			Cluster:       z.clusterStatus(),
		})
		return true
	})
	slices.SortFunc(statuses, func(a, b zoneStatus) int { return cmp.Compare(a.Zone, b.Zone) })
	return writeJSON(w, statuses)
}

// maxTop bounds ?top=, so one admin request cannot ask for a copy of a
// whole large table.
const maxTop = 1000

func (adminAPI) handleSessions(w http.ResponseWriter, r *http.Request) error {
	top := 10
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxTop {
			return caddy.APIError{
				HTTPStatus: http.StatusBadRequest,
				Err:        fmt.Errorf("top: want a number from 1 to %d, got %q", maxTop, v),
			}
		}
		top = n
	}
	name := r.PathValue("zone")
	var z *zone
	zones.Range(func(key, value any) bool {
		if key.(string) == name {
			z = value.(*zone)
			return false
		}
		return true
	})
	if z == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no zone %q", name)}
	}
	now := time.Now()
	sessions := []sessionStatus{}
	for _, st := range z.table.Busiest(top) {
		s := sessionStatus{
			Session: idgen.Hash(st.Key),
			Readers: st.Readers,
			Writer:  st.Writer,
			Waiting: st.Waiting,
		}
		if !st.OldestWaitSince.IsZero() {
			s.OldestWaitMS = float64(now.Sub(st.OldestWaitSince)) / float64(time.Millisecond)
		}
		sessions = append(sessions, s)
	}
	return writeJSON(w, map[string]any{"zone": name, "sessions": sessions})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return nil
}

// Interface guard
var _ caddy.AdminRouter = adminAPI{}
