package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestScaleFlags(t *testing.T) {
	t.Parallel()
	const a, b, c = "postgres://r1/db", "postgres://r2/db", "postgres://r3/db"
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []string
		lag     time.Duration
		listen  string
		drain   time.Duration
		wantErr bool
	}{
		{name: "none", want: nil, lag: 5 * time.Second},
		{name: "env, comma-separated", env: map[string]string{"CUSTINFO_REPLICA_DATABASE_URLS": a + ", " + b + ","}, want: []string{a, b}, lag: 5 * time.Second},
		{name: "flags replace the env", env: map[string]string{"CUSTINFO_REPLICA_DATABASE_URLS": a},
			args: []string{"--replica-database-url", b, "--replica-database-url", c}, want: []string{b, c}, lag: 5 * time.Second},
		{name: "env settings", env: map[string]string{"CUSTINFO_MAX_REPLICA_LAG": "2s", "CUSTINFO_LISTEN_DATABASE_URL": a, "CUSTINFO_DRAIN_DELAY": "5s"},
			lag: 2 * time.Second, listen: a, drain: 5 * time.Second},
		{name: "flags", args: []string{"--max-replica-lag", "750ms", "--listen-database-url", b, "--drain-delay", "1s"},
			lag: 750 * time.Millisecond, listen: b, drain: time.Second},
		{name: "empty replica URL", args: []string{"--replica-database-url", ""}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return tt.env[k] }}
			fs := newFlagSet(e, "serve", "")
			var f serveFlags
			scaleFlags(fs, e, &f)
			err := fs.Parse(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse %q: %v, want error %v", tt.args, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(f.replicaURLs.urls, tt.want) || f.maxReplicaLag != tt.lag || f.listenURL != tt.listen || f.drainDelay != tt.drain {
				t.Errorf("parse %q = replicas %q, lag %s, listen %q, drain %s; want %q, %s, %q, %s",
					tt.args, f.replicaURLs.urls, f.maxReplicaLag, f.listenURL, f.drainDelay, tt.want, tt.lag, tt.listen, tt.drain)
			}
		})
	}
}
