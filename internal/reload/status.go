package reload

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/store"
)

// Instance names a server in custinfo.status.
type Instance struct {
	Name string // the row's key; unique among running servers
	Host string
	PID  int
	// KeysUsedFunc, when set, returns when each key last verified a request
	// at this server.
	KeysUsedFunc func() map[int64]time.Time
}

type lookupStatus struct {
	State    string   `json:"state"`
	Problems []string `json:"problems"`
}

type keyStatus struct {
	Lookup   *string    `json:"lookup"` // null: every lookup
	Label    string     `json:"label"`
	State    string     `json:"state"`
	LastUsed *time.Time `json:"last_used"`
}

// statusJSON describes snap's lookups and keys as custinfo.status keeps them.
func statusJSON(snap *lookup.Snapshot, used map[int64]time.Time, now time.Time) (lookups, keys []byte, err error) {
	ls := make(map[string]lookupStatus, len(snap.Names()))
	for _, name := range snap.Names() {
		l, _ := snap.Get(name)
		st := lookupStatus{State: "ok", Problems: append([]string{}, l.Problems...)}
		switch {
		case l.Broken():
			st.State = "broken"
		case !l.Enabled:
			st.State = "disabled"
		}
		ls[name] = st
	}
	ks := make(map[string]keyStatus, len(snap.KeyDefs()))
	for _, k := range snap.KeyDefs() {
		st := keyStatus{Label: k.Label, State: k.State(now)}
		if k.Lookup != "" {
			name := k.Lookup
			st.Lookup = &name
		}
		if t, ok := used[k.ID]; ok {
			t := t.UTC()
			st.LastUsed = &t
		}
		ks[strconv.FormatInt(k.ID, 10)] = st
	}
	if lookups, err = json.Marshal(ls); err != nil {
		return nil, nil, fmt.Errorf("encode lookups status: %w", err)
	}
	if keys, err = json.Marshal(ks); err != nil {
		return nil, nil, fmt.Errorf("encode keys status: %w", err)
	}
	return lookups, keys, nil
}

// recordStatus writes the outcome of a load to custinfo.status: the new
// snapshot, or loadErr with the previous snapshot kept. A failed write is
// logged (once until a write succeeds again) and changes nothing else.
func (h *Holder) recordStatus(ctx context.Context, snap *lookup.Snapshot, loadErr error) {
	in := h.cfg.Instance
	if in == nil || h.stopped {
		return
	}
	now := h.cfg.NowFunc()
	st := store.Status{Instance: in.Name, Host: in.Host, PID: in.PID, StartedAt: h.started, CheckedAt: now}
	if loadErr != nil {
		st.LoadError = loadErr.Error()
	} else {
		var used map[int64]time.Time
		if in.KeysUsedFunc != nil {
			used = in.KeysUsedFunc()
		}
		lookups, keys, err := statusJSON(snap, used, now)
		if err != nil {
			h.statusFailed(err)
			return
		}
		loaded := snap.LoadedAt
		st.LoadedAt, st.Lookups, st.Keys = &loaded, lookups, keys
	}
	// A load that failed because ctx ended still gets its row written.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := store.New(h.cfg.Pool).RecordStatus(wctx, st); err != nil {
		h.statusFailed(err)
		return
	}
	h.statusBroken = false
}

func (h *Holder) statusFailed(err error) {
	if !h.statusBroken {
		h.cfg.Logger.Warn("could not record this server's state in custinfo.status (grant it INSERT, UPDATE on the table: db/roles/serve_role.sql)", "err", err)
	}
	h.statusBroken = true
}

// Stopped brings this server's row of custinfo.status up to date (the keys'
// last use) and marks it stopped. A load that ends after it (one that Run
// had in flight as the server stopped) no longer writes the row, which
// would clear stopped_at again.
func (h *Holder) Stopped(ctx context.Context) error {
	if h.cfg.Instance == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if snap := h.Snapshot(); snap != nil {
		h.recordStatus(ctx, snap, nil)
	}
	h.stopped = true
	return store.New(h.cfg.Pool).RecordStopped(ctx, h.cfg.Instance.Name, h.cfg.NowFunc())
}
