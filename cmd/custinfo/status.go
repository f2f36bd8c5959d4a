package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/reload"
)

// defaultInstance names this process in custinfo.status: host:pid.
func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// keyUse remembers when each key last verified a request at this server,
// for custinfo.status. note is on the request path: a map read and an
// atomic store, a lock only for a key's first use.
type keyUse struct {
	mu   sync.RWMutex
	last map[int64]*atomic.Int64 // unix nanoseconds
}

func newKeyUse() *keyUse { return &keyUse{last: map[int64]*atomic.Int64{}} }

// note records o's key use.
func (u *keyUse) note(o *httpapi.Outcome) {
	if o.KeyID == 0 {
		return
	}
	u.mu.RLock()
	v := u.last[o.KeyID]
	u.mu.RUnlock()
	if v == nil {
		u.mu.Lock()
		if v = u.last[o.KeyID]; v == nil {
			v = new(atomic.Int64)
			u.last[o.KeyID] = v
		}
		u.mu.Unlock()
	}
	at := o.At.UnixNano()
	for {
		old := v.Load()
		if old >= at || v.CompareAndSwap(old, at) {
			return
		}
	}
}

// snapshot returns the last use of every key used so far.
func (u *keyUse) snapshot() map[int64]time.Time {
	u.mu.RLock()
	defer u.mu.RUnlock()
	out := make(map[int64]time.Time, len(u.last))
	for id, v := range u.last {
		out[id] = time.Unix(0, v.Load())
	}
	return out
}

// instance describes this server for custinfo.status.
func (u *keyUse) instance(name string) *reload.Instance {
	host, _ := os.Hostname()
	return &reload.Instance{Name: name, Host: host, PID: os.Getpid(), KeysUsedFunc: u.snapshot}
}
