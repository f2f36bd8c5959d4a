package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/httpapi"
)

// resend returns a copy of req, byte for byte, addressed to lookup.
func resend(t *testing.T, req *http.Request, base, lookup, body string) *http.Request {
	t.Helper()
	again, err := http.NewRequest(http.MethodPost, base+"/v1/lookups/"+lookup, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	again.Header = req.Header.Clone()
	return again
}

func TestReplayAcrossLookups(t *testing.T) {
	t.Parallel()
	f := newOpsFixture(t, nil)
	tests := []struct {
		name string
		mode httpapi.ReplayMode
		// statuses of: the original to open, the same to v4, the same to
		// open again, a new signature to v4.
		want [4]int
	}{
		{"default refuses other lookups", httpapi.ReplayOtherLookup, [4]int{200, 403, 200, 200}},
		{"strict refuses any second use", httpapi.ReplayStrict, [4]int{200, 403, 403, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			cfg.Replay = tt.mode
			base := opsListen(t, httpapi.New(cfg), "tcp4")
			first := opsRequest(t, base, "open", opsKey, opsBody)
			reqs := []*http.Request{
				first,
				resend(t, first, base, "v4", opsBody),
				resend(t, first, base, "open", opsBody),
				opsRequest(t, base, "v4", opsKey, opsBody+" "),
			}
			for i, req := range reqs {
				status, _, body := opsDo(t, req)
				if status != tt.want[i] {
					t.Errorf("request %d (%s): status %d (%s), want %d", i, req.URL.Path, status, body, tt.want[i])
				}
				if status == 403 && !strings.Contains(body, `"detail":"signature does not verify"`) {
					t.Errorf("request %d: a refused replay answers %s, want the uniform 403", i, body)
				}
			}
		})
	}
}

func TestParseReplayMode(t *testing.T) {
	for in, want := range map[string]httpapi.ReplayMode{"": httpapi.ReplayOtherLookup, "lookup": httpapi.ReplayOtherLookup, "strict": httpapi.ReplayStrict} {
		if got, err := httpapi.ParseReplayMode(in); err != nil || got != want {
			t.Errorf("ParseReplayMode(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"off", "Strict", "none", " strict"} {
		if _, err := httpapi.ParseReplayMode(in); err == nil {
			t.Errorf("ParseReplayMode(%q) accepted", in)
		}
	}
}
