package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/replica"
)

// urlList is a repeatable flag; the first flag replaces the list taken from
// the environment.
type urlList struct {
	urls []string
	set  bool
}

func (l *urlList) String() string { return fmt.Sprintf("%d URLs", len(l.urls)) }

func (l *urlList) Set(v string) error {
	if !l.set {
		l.urls, l.set = nil, true
	}
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty URL")
	}
	l.urls = append(l.urls, v)
	return nil
}

// scaleFlags registers serve's flags for read replicas, the LISTEN
// connection and draining.
func scaleFlags(fs *flag.FlagSet, e *env, f *serveFlags) {
	for _, u := range strings.Split(e.stringEnv("CUSTINFO_REPLICA_DATABASE_URLS", ""), ",") {
		if u = strings.TrimSpace(u); u != "" {
			f.replicaURLs.urls = append(f.replicaURLs.urls, u)
		}
	}
	fs.Var(&f.replicaURLs, "replica-database-url",
		"a read replica (hot standby) that answers lookups; repeat for several (env CUSTINFO_REPLICA_DATABASE_URLS, comma-separated)")
	fs.DurationVar(&f.maxReplicaLag, "max-replica-lag", e.durationEnv("CUSTINFO_MAX_REPLICA_LAG", replica.DefaultMaxLag),
		"a replica further behind the primary than this is skipped (env CUSTINFO_MAX_REPLICA_LAG)")
	fs.StringVar(&f.listenURL, "listen-database-url", e.stringEnv("CUSTINFO_LISTEN_DATABASE_URL", ""),
		"direct session connection to the primary for LISTEN, when --database-url goes through a transaction pooler (env CUSTINFO_LISTEN_DATABASE_URL; default --database-url)")
	fs.DurationVar(&f.drainDelay, "drain-delay", e.durationEnv("CUSTINFO_DRAIN_DELAY", 0),
		"on SIGTERM, answer /readyz 503 this long before stopping to accept, so a load balancer takes the instance out first (env CUSTINFO_DRAIN_DELAY)")
}

// databases are serve's connections: the primary (configuration, LISTEN,
// key last-used, access log) and the read replicas that answer lookups.
type databases struct {
	primary  *pgxpool.Pool
	replicas []*pgxpool.Pool
	router   *replica.Router // nil without replicas
	listen   *pgx.ConnConfig // nil: the primary's
}

// openDatabases connects to the primary and creates the replicas' pools.
// A replica that does not answer yet does not stop serve: it is skipped
// until it does.
func openDatabases(ctx context.Context, f serveFlags, opt func(*pgxpool.Config), logger *slog.Logger) (*databases, error) {
	d := &databases{}
	var err error
	if f.listenURL != "" {
		if d.listen, err = pgx.ParseConfig(f.listenURL); err != nil {
			return nil, fmt.Errorf("parse --listen-database-url: %w", err)
		}
		if d.listen.RuntimeParams["application_name"] == "" {
			d.listen.RuntimeParams["application_name"] = "custinfo"
		}
		if d.listen.ConnectTimeout == 0 {
			d.listen.ConnectTimeout = 5 * time.Second
		}
	}
	if f.maxReplicaLag < 0 {
		return nil, fmt.Errorf("--max-replica-lag %s: want a positive duration (0: the default, %s)", f.maxReplicaLag, replica.DefaultMaxLag)
	}
	for i, u := range f.replicaURLs.urls {
		cfg, err := poolConfig(u, int32(f.maxConns), opt)
		if err != nil {
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("replica %s: %w", replica.Name(cfg.ConnConfig), err)
		}
		d.replicas = append(d.replicas, p)
	}
	if d.primary, err = connect(ctx, f.databaseURL, int32(f.maxConns), opt); err != nil {
		d.close()
		return nil, err
	}
	if len(d.replicas) > 0 {
		d.router = replica.New(replica.Config{Logger: logger, Primary: d.primary, Replicas: d.replicas, MaxLag: f.maxReplicaLag})
	}
	return d, nil
}

// lookups is what runs the lookups' queries.
func (d *databases) lookups() lookup.BatchQuerier {
	if d.router != nil {
		return d.router
	}
	return d.primary
}

func (d *databases) close() {
	for _, p := range d.replicas {
		p.Close()
	}
	if d.primary != nil {
		d.primary.Close()
	}
}

// run checks the replicas until ctx ends.
func (d *databases) run(ctx context.Context) {
	if d.router != nil {
		_ = d.router.Run(ctx)
	}
}

// observe wires the replicas into the metrics.
func (d *databases) observe(m *httpapi.Metrics) {
	if d.router == nil {
		return
	}
	for name, p := range d.router.Pools() {
		m.AddPool(name, p)
	}
	m.ReplicasFunc = func() []httpapi.ReplicaState {
		sts := d.router.Statuses()
		out := make([]httpapi.ReplicaState, 0, len(sts))
		for _, st := range sts {
			lag := math.Inf(1)
			if st.Lag < time.Duration(math.MaxInt64) {
				lag = st.Lag.Seconds()
			}
			out = append(out, httpapi.ReplicaState{Name: st.Name, Usable: st.Usable, Lag: lag})
		}
		return out
	}
}

// replicasInUse names the replicas that answer lookups and those skipped,
// for /readyz; nil without replicas.
func (d *databases) replicasInUse() func() (inUse, skipped []string) {
	if d.router == nil {
		return nil
	}
	return func() (inUse, skipped []string) {
		inUse, skipped = []string{}, []string{}
		for _, st := range d.router.Statuses() {
			if st.Usable {
				inUse = append(inUse, st.Name)
			} else {
				skipped = append(skipped, st.Name)
			}
		}
		return inUse, skipped
	}
}
