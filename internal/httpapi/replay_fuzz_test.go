package httpapi

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// FuzzReplayGuard runs a sequence of verified requests, three bytes each
// (signature, lookup, seconds since the start), through a guard large enough
// to forget nothing, comparing it with a plain model of the rule, and
// through a guard of two slots: it must never hold more than two signatures,
// and must agree with the model until it has forgotten one early (after
// that, a forgotten signature may be learnt again for another lookup).
func FuzzReplayGuard(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 1, 0, 0, 2})               // retry, then another lookup
	f.Add([]byte{0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 1, 0})      // a full ring, then the first again
	f.Add([]byte{0, 0, 0, 0, 1, 255, 5, 5, 10, 5, 6, 200}) // after the window closes
	f.Add([]byte{7, 1, 10, 7, 1, 20, 7, 2, 30, 8, 2, 30, 8, 2, 31})
	const window = 100 * time.Second
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 3*200 {
			ops = ops[:3*200]
		}
		for _, mode := range []ReplayMode{ReplayOtherLookup, ReplayStrict} {
			big := newReplayGuard(mode, window, 1000)
			small := newReplayGuard(mode, window, 2)
			type seen struct {
				lookup  string
				expires time.Time
			}
			model := map[string]seen{}
			now := t0
			for i := 0; i+2 < len(ops); i += 3 {
				s := sig(fmt.Sprint(ops[i] % 8))
				lookup := fmt.Sprint("l", ops[i+1]%3)
				if at := t0.Add(time.Duration(ops[i+2]) * time.Second); at.After(now) {
					now = at // time only moves forward
				}
				ts := now // stamped now; the timestamp check has passed
				refuse := false
				if m, ok := model[s]; ok && !now.After(m.expires) {
					refuse = mode == ReplayStrict || m.lookup != lookup
				} else {
					model[s] = seen{lookup, ts.Add(window)}
				}
				var re *replayError
				err := big.check(s, lookup, ts, now)
				if refused := errors.As(err, &re); refused != refuse || (err != nil && !refused) {
					t.Fatalf("mode %d op %d (%s on %s at +%s): %v, want refused=%v", mode, i/3, s[:6], lookup, now.Sub(t0), err, refuse)
				}
				err = small.check(s, lookup, ts, now)
				if small.evicted.Load() == 0 && (err != nil) != refuse {
					t.Fatalf("mode %d op %d: the small guard, having forgotten nothing, answered %v, want refused=%v", mode, i/3, err, refuse)
				}
				if len(small.seen) > 2 {
					t.Fatalf("the small guard holds %d signatures", len(small.seen))
				}
			}
		}
	})
}
