package httpapi

import (
	"encoding/base64"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ReplayMode says which second uses of a verified signature are refused
// while its timestamp is inside the window.
type ReplayMode int

const (
	// ReplayOtherLookup, the default, refuses a signature on any lookup
	// other than the one it first verified for. The same request sent again
	// to the same lookup (a helpdesk's retry) is answered.
	ReplayOtherLookup ReplayMode = iota
	// ReplayStrict refuses every second use of a signature.
	ReplayStrict
)

// ParseReplayMode reads the --replay setting: "lookup" (the default) or "strict".
func ParseReplayMode(s string) (ReplayMode, error) {
	switch s {
	case "", "lookup":
		return ReplayOtherLookup, nil
	case "strict":
		return ReplayStrict, nil
	}
	return 0, fmt.Errorf("replay mode %q: want lookup or strict", s)
}

// DefaultReplayCapacity is how many verified signatures the replay guard
// remembers: about 330 requests a second over a 5-minute window, in about
// 12 MB of heap when full.
const DefaultReplayCapacity = 100_000

// replayGuard remembers the signatures that verified, until their timestamp
// leaves the window, and refuses their reuse as its mode says. It promises
// this within one process only: another instance behind the same load
// balancer has its own memory.
//
// Memory is bounded: at most capacity signatures are remembered, in a ring.
// When more arrive within one window than it holds, the oldest is forgotten
// before its time (counted in evicted) and its replay is no longer refused.
type replayGuard struct {
	mode     ReplayMode
	window   time.Duration
	mu       sync.Mutex
	seen     map[replayKey]replayEntry
	ring     []replayKey
	next     int // slot of the next signature
	filled   int // slots in use
	evicted  atomic.Uint64
	capacity int
}

// replayKey is a signature's MAC, decoded.
type replayKey [32]byte

type replayEntry struct {
	lookup  string // the lookup it first verified for
	expires int64  // unix nanoseconds after which its timestamp is refused anyway
	slot    int32  // its place in the ring
}

func newReplayGuard(mode ReplayMode, window time.Duration, capacity int) *replayGuard {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &replayGuard{
		mode:     mode,
		window:   window,
		seen:     make(map[replayKey]replayEntry),
		ring:     make([]replayKey, capacity),
		capacity: capacity,
	}
}

// replayError is a verified signature whose use the guard refuses; it is
// answered like every other 403.
type replayError struct{ reason string }

func (e *replayError) Error() string { return e.reason }

// check records that sig, stamped ts, verified for lookup at now, or
// returns a *replayError when that use is refused. sig is a signature that
// verified: standard padded Base64 of 32 bytes.
func (g *replayGuard) check(sig, lookup string, ts, now time.Time) error {
	var in [44]byte
	var k replayKey
	var buf [33]byte
	copy(in[:], sig)
	n, err := base64.StdEncoding.Decode(buf[:], in[:])
	if err != nil || n != len(k) {
		return &replayError{"signature is not 32 bytes of standard Base64"}
	}
	copy(k[:], buf[:n])
	nowNs := now.UnixNano()

	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.seen[k]; ok && e.expires >= nowNs {
		switch {
		case g.mode == ReplayStrict:
			return &replayError{"signature already used within the timestamp window (--replay=strict)"}
		case e.lookup != lookup:
			return &replayError{fmt.Sprintf("signature already used for lookup %q within the timestamp window", e.lookup)}
		}
		return nil
	}
	slot := g.next
	if g.filled == g.capacity {
		old := g.ring[slot]
		if oe, ok := g.seen[old]; ok && int(oe.slot) == slot {
			if oe.expires >= nowNs {
				g.evicted.Add(1)
			}
			delete(g.seen, old)
		}
	} else {
		g.filled++
	}
	g.ring[slot] = k
	g.seen[k] = replayEntry{lookup: lookup, expires: ts.Add(g.window).UnixNano(), slot: int32(slot)}
	g.next = (slot + 1) % g.capacity
	return nil
}
