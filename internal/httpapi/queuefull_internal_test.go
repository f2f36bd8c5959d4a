package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/lookup"
)

// A request refused because its lookup's queue is full is a 500
// database_error whose detail says why, in the envelope of the spec.
func TestResolveQueueFull(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("run lookup: %w", &lookup.QueryError{Lookup: "customer", Err: lookup.ErrQueueFull})
	ae := resolve(err)
	if ae.Status != http.StatusInternalServerError || ae.Code != CodeDatabaseError || ae.Message != msgServer ||
		!strings.Contains(ae.Detail, "too many requests are waiting") {
		t.Errorf("resolve(%v) = %+v, want 500 %s with a detail about waiting requests", err, ae, CodeDatabaseError)
	}
	if strings.Contains(ae.Detail, "customer") {
		t.Errorf("detail %q names the lookup", ae.Detail)
	}
}
