package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"
)

// sig returns a signature-shaped value named by s.
func sig(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func TestReplayGuardRemembersUntilTheWindowCloses(t *testing.T) {
	const window = 5 * time.Minute
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	g := newReplayGuard(ReplayOtherLookup, window, 4)
	var re *replayError
	if err := g.check(sig("a"), "names", t0, t0); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := g.check(sig("a"), "emails", t0, t0.Add(window)); !errors.As(err, &re) {
		t.Errorf("other lookup at the window's edge: %v, want refused", err)
	}
	// Past ts+window the timestamp check refuses the request anyway; the
	// guard forgets it and a (clock-skewed) reuse is not its business.
	if err := g.check(sig("a"), "emails", t0, t0.Add(window+time.Millisecond)); err != nil {
		t.Errorf("after the window: %v, want nil", err)
	}
}

func TestReplayGuardIsBounded(t *testing.T) {
	const window = 5 * time.Minute
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	g := newReplayGuard(ReplayOtherLookup, window, 3)
	for i := range 10 {
		if err := g.check(sig(fmt.Sprint(i)), "names", t0, t0); err != nil {
			t.Fatalf("sig-%d: %v", i, err)
		}
		if len(g.seen) > 3 {
			t.Fatalf("after %d signatures the guard holds %d, want at most 3", i+1, len(g.seen))
		}
	}
	if got := g.evicted.Load(); got != 7 {
		t.Errorf("evicted = %d, want 7", got)
	}
	var re *replayError
	for i := 7; i < 10; i++ { // the newest three are still refused elsewhere
		if err := g.check(sig(fmt.Sprint(i)), "emails", t0, t0); !errors.As(err, &re) {
			t.Errorf("sig-%d on another lookup: %v, want refused", i, err)
		}
	}
	// A signature used again after it expired takes a new slot; its old
	// slot, when overwritten, must not remove the new entry.
	g2 := newReplayGuard(ReplayOtherLookup, window, 2)
	_ = g2.check(sig("x"), "names", t0, t0)
	later := t0.Add(2 * window)
	_ = g2.check(sig("x"), "names", later, later) // re-recorded in slot 1
	_ = g2.check(sig("y"), "names", later, later) // overwrites slot 0, x's old slot
	if err := g2.check(sig("x"), "emails", later, later); !errors.As(err, &re) {
		t.Errorf("x re-recorded, then its old slot reused: %v, want still refused", err)
	}
}

func BenchmarkReplayGuard(b *testing.B) {
	now := time.Now()
	g := newReplayGuard(ReplayOtherLookup, 5*time.Minute, DefaultReplayCapacity)
	sigs := make([]string, 4096)
	for i := range sigs {
		sigs[i] = sig(fmt.Sprint(i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = g.check(sigs[i%len(sigs)], "names", now, now)
		i++
	}
}
