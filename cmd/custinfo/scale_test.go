package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/signature"
	"github.com/custinfo/custinfo/internal/testwait"
)

// serveProc is custinfo serve running as a process of its own.
type serveProc struct {
	proc        *pgtest.Proc
	base        string
	metricsBase string // http://host:port of its --metrics-addr
}

// startServeProc starts "custinfo serve" on a free loopback port (or port,
// when not 0) with args, and waits until /readyz answers 200.
func startServeProc(t *testing.T, port int, args ...string) *serveProc {
	t.Helper()
	if port == 0 {
		port = pgtest.FreePort(t)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(pgtest.FreePort(t))
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", addr, "--metrics-addr", metricsAddr,
		"--log-format", "text", "--shutdown-timeout", "10s", "--reload-interval", "1m"}, args...)...)
	cmd.Env = append(os.Environ(), "CUSTINFO_TEST_EXEC=1")
	s := &serveProc{proc: pgtest.StartCmd(t, cmd), base: "http://" + addr, metricsBase: "http://" + metricsAddr}
	s.proc.Name = "custinfo serve " + addr
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.proc.Done():
			t.Fatalf("serve exited before it was ready: %v\n%s", s.proc.Err(), s.proc.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on %s not ready within 60 s:\n%s", addr, s.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *serveProc) stop(t *testing.T) {
	t.Helper()
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", s.proc.Name, err)
	}
	select {
	case <-s.proc.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit within 60 s of SIGTERM", s.proc.Name)
	}
	if err := s.proc.Err(); err != nil {
		t.Fatalf("%s exited with %v:\n%s", s.proc.Name, err, s.proc.Output())
	}
}

// readyz returns the replicas /readyz says are in use and skipped.
func (s *serveProc) readyz(t *testing.T) (inUse, skipped []string) {
	t.Helper()
	_, body := opsGet(t, opsClient, s.base+"/readyz")
	var r struct {
		InUse   []string `json:"replicas_in_use"`
		Skipped []string `json:"replicas_skipped"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return r.InUse, r.Skipped
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// signedLookup builds a signed request of the "customer" lookup of
// opsSeedSQL for callNum.
func signedLookup(base, callNum string) (*http.Request, error) {
	const path = "/v1/lookups/customer"
	body := `{"callNum":"` + callNum + `"}`
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", signature.Sign([]byte(opsKey), signature.SchemeBody, path, []byte(body), ts))
	return req, nil
}

// lookupOnce sends one signed lookup and returns its status and body; a
// transport error is status 0.
func lookupOnce(client *http.Client, base, callNum string) (int, string) {
	req, err := signedLookup(base, callNum)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// scaleDB returns a primary cluster and the name of a migrated database on
// it holding opsSeedSQL.
func scaleDB(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	primary := pgtest.NewPrimary(t)
	db := primary.NewDatabase(t)
	primary.Exec(db, opsSeedSQL)
	return primary, db
}

// countQuery returns the bigint that sql returns on database of c.
func countQuery(t *testing.T, c *pgtest.Cluster, database, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(database))
	if err != nil {
		t.Fatalf("connect %s: %v", c.Name, err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %s: %v", c.Name, sql, err)
	}
	return n
}

// replicaLookups counts the custinfo sessions on the standby whose last
// query was a lookup of opsdata.people.
const replicaLookups = `SELECT count(*) FROM pg_stat_activity
	WHERE datname = $1 AND application_name = 'custinfo' AND query LIKE '%"opsdata"."people"%'`

func TestReadReplicas(t *testing.T) {
	t.Parallel()
	primary, db := scaleDB(t)
	standby := primary.NewStandby(t, "standby")
	primary.WaitReplayed(standby, 30*time.Second)
	const maxLag = 2 * time.Second
	s := startServeProc(t, 0, "--database-url", primary.URL(db),
		"--replica-database-url", standby.URL(db), "--max-replica-lag", maxLag.String())
	name := standby.HostPort()
	client := &http.Client{Timeout: 5 * time.Second}

	testwait.Until(t, "the replica in use on /readyz", 10*time.Second, func() bool {
		inUse, _ := s.readyz(t)
		return contains(inUse, name)
	})
	t.Run("replica answers lookups", func(t *testing.T) {
		testwait.Until(t, "a custinfo session on the standby that ran a lookup (pg_stat_activity)", 10*time.Second, func() bool {
			if status, body := lookupOnce(client, s.base, opsPhone); status != 200 || !strings.Contains(body, "홍길동") {
				t.Fatalf("lookup = %d %s, want 200 with the customer", status, body)
			}
			return countQuery(t, standby, db, replicaLookups, db) > 0
		})
		_, metrics := opsGet(t, opsClient, s.metricsBase+"/metrics")
		for _, want := range []string{
			`custinfo_replica_usable{replica="` + name + `"} 1`,
			`custinfo_db_pool_total_conns{pool="` + name + `"}`,
			`custinfo_db_pool_total_conns{pool="primary"}`,
			`custinfo_replica_lag_seconds{replica="` + name + `"}`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics has no %s", want)
			}
		}
	})

	t.Run("a customer committed on the primary is found within max lag", func(t *testing.T) {
		standby.Exec(db, `SELECT pg_wal_replay_pause()`)
		primary.Exec(db, `INSERT INTO opsdata.people VALUES (2, 'C-0002', '김철수', '010-5555-0002')`)
		start := time.Now()
		var elapsed time.Duration
		testwait.Until(t, "the new customer found", maxLag+time.Second, func() bool {
			status, _ := lookupOnce(client, s.base, "010-5555-0002")
			elapsed = time.Since(start)
			return status == 200
		})
		t.Logf("found %s after the commit, with replay paused (--max-replica-lag %s)", elapsed.Round(time.Millisecond), maxLag)
		if _, skipped := s.readyz(t); !contains(skipped, name) {
			t.Errorf("/readyz does not list the paused replica as skipped")
		}
		standby.Exec(db, `SELECT pg_wal_replay_resume()`)
		testwait.Until(t, "the caught-up replica in use again", 10*time.Second, func() bool {
			inUse, _ := s.readyz(t)
			return contains(inUse, name)
		})
	})

	t.Run("a replica that goes down is skipped and used again when back", func(t *testing.T) {
		stopped := time.Now()
		standby.Stop("immediate")
		var failedEarly, failedLate, answered int
		for time.Since(stopped) < 4*time.Second {
			status, body := lookupOnce(client, s.base, opsPhone)
			switch {
			case status == 200:
				answered++
			case time.Since(stopped) < 2*time.Second:
				failedEarly++
			default:
				failedLate++
				t.Errorf("lookup %s after the replica stopped = %d %s", time.Since(stopped).Round(time.Millisecond), status, body)
			}
		}
		t.Logf("replica stopped: %d lookups answered, %d failed in the first 2 s, %d after", answered, failedEarly, failedLate)
		if _, skipped := s.readyz(t); !contains(skipped, name) {
			t.Errorf("/readyz does not list the stopped replica as skipped")
		}
		standby.Start()
		testwait.Until(t, "the restarted replica in use again", 20*time.Second, func() bool {
			inUse, _ := s.readyz(t)
			return contains(inUse, name)
		})
		testwait.Until(t, "a custinfo session on the restarted standby that ran a lookup", 10*time.Second, func() bool {
			if status, body := lookupOnce(client, s.base, opsPhone); status != 200 {
				t.Fatalf("lookup = %d %s, want 200", status, body)
			}
			return countQuery(t, standby, db, replicaLookups, db) > 0
		})
	})
	s.stop(t)
}

func TestPgBouncerTransactionPooling(t *testing.T) {
	t.Parallel()
	primary, db := scaleDB(t)
	port := pgtest.PgBouncer(t, primary.HostPort(), "transaction")
	bouncer := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&default_query_exec_mode=exec", port, db)
	client := &http.Client{Timeout: 5 * time.Second}

	// renameSeen renames the result field from to to over SQL and waits
	// until a lookup answers with it; it returns the lookups answered.
	renameSeen := func(t *testing.T, s *serveProc, from, to string, within time.Duration) int {
		t.Helper()
		primary.Exec(db, `UPDATE custinfo.lookup_results SET field = $1 WHERE lookup = 'customer' AND field = $2`, to, from)
		answered := 0
		start := time.Now()
		testwait.Until(t, "the renamed field in a lookup", within, func() bool {
			status, body := lookupOnce(client, s.base, opsPhone)
			if status == 200 {
				answered++
			}
			return status == 200 && strings.Contains(body, `"`+to+`"`)
		})
		t.Logf("rename %s -> %s seen after %s", from, to, time.Since(start).Round(time.Millisecond))
		return answered
	}
	// run answers lookups through s, renames a field and checks that the
	// access log holds one row per answered lookup after s stops.
	run := func(t *testing.T, s *serveProc, from, to string) {
		before := countQuery(t, primary, db, `SELECT count(*) FROM custinfo.access_log`)
		answered := 0
		for range 30 {
			status, body := lookupOnce(client, s.base, opsPhone)
			if status != 200 || !strings.Contains(body, `"`+from+`"`) {
				t.Fatalf("lookup through PgBouncer = %d %s, want 200 with %s", status, body, from)
			}
			answered++
		}
		answered += renameSeen(t, s, from, to, 2*time.Second)
		s.stop(t)
		if got := countQuery(t, primary, db, `SELECT count(*) FROM custinfo.access_log`) - before; got != int64(answered) {
			t.Errorf("access log gained %d rows, want %d (one per answered lookup)", got, answered)
		}
		if strings.Contains(s.proc.Output(), "prepared statement") {
			t.Errorf("serve's log mentions prepared statements:\n%s", s.proc.Output())
		}
	}

	t.Run("LISTEN on a direct connection", func(t *testing.T) {
		s := startServeProc(t, 0, "--database-url", bouncer, "--listen-database-url", primary.URL(db))
		run(t, s, "userName", "fullName")
		if strings.Contains(s.proc.Output(), "polled") {
			t.Errorf("serve polls although LISTEN has a direct connection:\n%s", s.proc.Output())
		}
	})
	t.Run("LISTEN through the pooler falls back to polling", func(t *testing.T) {
		s := startServeProc(t, 0, "--database-url", bouncer)
		testwait.Until(t, "serve's warning that it polls", 10*time.Second, func() bool {
			return strings.Contains(s.proc.Output(), "config changes are polled")
		})
		run(t, s, "fullName", "userName")
	})
}

// haproxy starts HAProxy on a free port in front of servers, checking
// their /readyz every 300 ms (two failed checks take one out), and returns its address and a function that
// reports how many servers it has up. It never retries a request on
// another server (deploy/haproxy/haproxy.cfg does): a request lost by an
// instance that stops is a failed request here.
func haproxy(t *testing.T, servers []string) (base string, up func() int) {
	t.Helper()
	path := pgtest.NeedBinary(t, "haproxy")
	port, statsPort := pgtest.FreePort(t), pgtest.FreePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 500
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 0
frontend custinfo
    bind 127.0.0.1:%d
    default_backend custinfo
listen stats
    bind 127.0.0.1:%d
    stats enable
    stats uri /stats
backend custinfo
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    timeout check 1s
    default-server check inter 300ms fall 2 rise 2
`, port, statsPort)
	for i, s := range servers {
		fmt.Fprintf(&b, "    server s%d %s\n", i+1, s)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := pgtest.StartProc(t, false, path, "-db", "-f", cfg)
	pgtest.WaitListening(t, proc, "127.0.0.1:"+strconv.Itoa(statsPort), 20*time.Second)
	statsURL := "http://127.0.0.1:" + strconv.Itoa(statsPort) + "/stats;csv"
	up = func() int {
		resp, err := http.Get(statsURL)
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		n := 0
		for _, line := range strings.Split(string(body), "\n") {
			f := strings.Split(line, ",")
			if len(f) > 17 && f[0] == "custinfo" && strings.HasPrefix(f[1], "s") && strings.HasPrefix(f[17], "UP") {
				n++
			}
		}
		return n
	}
	return "http://127.0.0.1:" + strconv.Itoa(port), up
}

func TestRollingRestartBehindHAProxy(t *testing.T) {
	t.Parallel()
	primary, db := scaleDB(t)
	args := []string{"--database-url", primary.URL(db), "--drain-delay", "2500ms"}
	ports := []int{pgtest.FreePort(t), pgtest.FreePort(t), pgtest.FreePort(t)}
	var servers []string
	procs := make([]*serveProc, len(ports))
	for i, p := range ports {
		procs[i] = startServeProc(t, p, args...)
		servers = append(servers, "127.0.0.1:"+strconv.Itoa(p))
	}
	base, up := haproxy(t, servers)
	testwait.Until(t, "HAProxy to see three instances up", 20*time.Second, func() bool { return up() == 3 })

	var answered, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, body := lookupOnce(client, base, opsPhone)
				if status == 200 {
					answered.Add(1)
				} else {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", status, body))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	start := time.Now()
	for i := range procs {
		if err := procs[i].proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Draining: /readyz answers 503 while lookups are still answered.
		testwait.Until(t, "/readyz 503 after SIGTERM", time.Second, func() bool {
			resp, err := http.Get(procs[i].base + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusServiceUnavailable
		})
		procs[i].stop(t)
		procs[i] = startServeProc(t, ports[i], args...)
		testwait.Until(t, "HAProxy to see the restarted instance up", 20*time.Second, func() bool { return up() == 3 })
	}
	time.Sleep(500 * time.Millisecond) // a last stretch of load with every instance restarted
	close(stop)
	wg.Wait()
	t.Logf("rolling restart of 3 instances in %s: %d lookups answered, %d failed", time.Since(start).Round(time.Millisecond), answered.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Errorf("%d lookups failed during the rolling restart; first: %v", n, firstFailure.Load())
	}
	if answered.Load() < 50 {
		t.Errorf("only %d lookups answered: the load did not run", answered.Load())
	}
	for _, p := range procs {
		p.stop(t)
	}
	if got := countQuery(t, primary, db, `SELECT count(*) FROM custinfo.access_log`); got != answered.Load()+failed.Load() {
		t.Errorf("access log holds %d rows, want %d (one per answered request)", got, answered.Load()+failed.Load())
	}
}
