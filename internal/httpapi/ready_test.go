package httpapi_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/lookup"
)

func TestReadyzNamesReplicas(t *testing.T) {
	t.Parallel()
	snap := &lookup.Snapshot{}
	tests := []struct {
		name     string
		ready    error
		replicas func() (inUse, skipped []string)
		status   int
		body     string
	}{
		{"no replicas configured", nil, nil, 200, `{"status":"ready"}` + "\n"},
		{"one in use, one skipped", nil, func() ([]string, []string) { return []string{"db1:5432"}, []string{"db2:5432"} },
			200, `{"status":"ready","replicas_in_use":["db1:5432"],"replicas_skipped":["db2:5432"]}` + "\n"},
		{"every replica skipped: the primary serves", nil, func() ([]string, []string) { return []string{}, []string{"db1:5432", "db2:5432"} },
			200, `{"status":"ready","replicas_in_use":[],"replicas_skipped":["db1:5432","db2:5432"]}` + "\n"},
		{"primary down", errors.New("database unreachable"), func() ([]string, []string) { return []string{"db1:5432"}, nil },
			503, `{"status":"unavailable","reason":"database unreachable"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := httpapi.NewOpsHandler(httpapi.Config{
				SnapshotFunc: func() *lookup.Snapshot { return snap },
				ReadyFunc:    func(context.Context) error { return tt.ready },
				ReplicasFunc: tt.replicas,
			}, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tt.status || string(body) != tt.body {
				t.Errorf("GET /readyz = %d %q, want %d %q", rec.Code, body, tt.status, tt.body)
			}
		})
	}
}
