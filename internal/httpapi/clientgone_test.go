package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/httpapi"
)

// TestClientGoneIsNotATimeout checks that a client that hangs up during a
// slow query is recorded as client_closed, not as a slow database.
func TestClientGoneIsNotATimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	srv := serve(t, f.handler(httpapi.Config{QueryTimeout: 10 * time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req := f.request(t, srv.URL, call{path: "/v1/lookups/slow", key: keyFaults, body: `{"callNum":"010-1234-5678"}`,
		header: http.Header{"X-Request-Id": {"client-gone-1"}}})
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the slow lookup answered %d within 300 ms", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client error = %v, want its deadline", err)
	}
	o, ok := f.outcome("client-gone-1")
	if !ok || o.Code != httpapi.CodeClientClosed || o.Status != 499 {
		t.Errorf("outcome = %+v (found %v), want code %s, status 499", o, ok, httpapi.CodeClientClosed)
	}
}
