package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/custinfo/custinfo/internal/store"
)

// Cluster is a PostgreSQL server a test started from the installed binaries:
// a primary made by initdb, or a hot standby made from one by
// pg_basebackup -R. It listens on a free loopback port, runs as the postgres
// user when the test runs as root, and is stopped and removed when the test
// ends.
type Cluster struct {
	// Name tells the clusters of one test apart in logs.
	Name string
	// Dir is the data directory.
	Dir string
	// Port is the loopback TCP port.
	Port int
	bin  string
	home string // holds Dir, the server log and the socket
	t    testing.TB
}

// PostgresBin returns the directory of the installed PostgreSQL server
// binaries, or "" when there is none.
func PostgresBin() string {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if isExecutable(filepath.Join(dir, "initdb")) {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) {
			return dir
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(r)
		}
	}
	return ""
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// NeedBinary skips t, with a message that says how to install it, when the
// program name is not installed (in PATH or, for the PostgreSQL server
// binaries, in PostgreSQL's bin directory). It returns the program's path.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	if bin := PostgresBin(); bin != "" && isExecutable(filepath.Join(bin, name)) {
		return filepath.Join(bin, name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		if isExecutable(filepath.Join(dir, name)) {
			return filepath.Join(dir, name)
		}
	}
	t.Skipf("%s is not installed (.ci/run installs it from Debian's packages); skipping", name)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serverUser is the account the server programs run as: PostgreSQL refuses
// to run as root, PgBouncer too.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs a postgres user to run the servers as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// serverDir creates a directory that the server user owns, in a fresh
// temporary directory removed when the test ends.
func serverDir(t testing.TB, name string) string {
	t.Helper()
	base, err := os.MkdirTemp("", "custinfo-"+name+"-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", base, err)
	}
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
	cred, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("chown %s: %v", dir, err)
		}
	}
	return dir
}

// serverCommand is exec.Command running as the server user.
func serverCommand(ctx context.Context, path string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		cmd.Env = append(os.Environ(), "HOME=/tmp", "USER=postgres", "LOGNAME=postgres")
	}
	return cmd, nil
}

// runServerCommand runs a PostgreSQL program as the server user and fails t
// with its output when it fails.
func runServerCommand(t testing.TB, timeout time.Duration, path string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd, err := serverCommand(ctx, path, args...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
}

// NewPrimary initdbs and starts a primary that accepts streaming
// replication, trusting every local connection. It skips t when the
// PostgreSQL server binaries are not installed.
func NewPrimary(t testing.TB) *Cluster {
	t.Helper()
	c := newCluster(t, "primary")
	runServerCommand(t, 2*time.Minute, filepath.Join(c.bin, "initdb"),
		"-D", c.Dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	c.writeConf(`wal_level = replica
max_wal_senders = 10
wal_keep_size = '256MB'
`)
	c.Start()
	return c
}

// NewStandby makes a hot standby of c with pg_basebackup -R and starts it.
// It replays c's WAL as it comes (streaming replication).
func (c *Cluster) NewStandby(t testing.TB, name string) *Cluster {
	t.Helper()
	s := newCluster(t, name)
	if err := os.Remove(s.Dir); err != nil {
		t.Fatalf("remove %s: %v", s.Dir, err)
	}
	runServerCommand(t, 2*time.Minute, filepath.Join(s.bin, "pg_basebackup"),
		"-D", s.Dir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres")
	// The copied postgresql.conf names the primary's port and socket: the
	// lines appended here win.
	s.writeConf("hot_standby = on\nhot_standby_feedback = on\n")
	s.Start()
	return s
}

func newCluster(t testing.TB, name string) *Cluster {
	t.Helper()
	bin := PostgresBin()
	if bin == "" {
		t.Skip("the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) are not installed; skipping")
	}
	for _, p := range []string{"initdb", "pg_ctl", "pg_basebackup", "postgres"} {
		if !isExecutable(filepath.Join(bin, p)) {
			t.Skipf("%s is not installed in %s; skipping", p, bin)
		}
	}
	home := serverDir(t, name)
	c := &Cluster{Name: name, Dir: filepath.Join(home, "data"), Port: FreePort(t), bin: bin, home: home, t: t}
	cred, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(c.Dir, 0o700); err != nil {
		t.Fatalf("mkdir %s: %v", c.Dir, err)
	}
	if cred != nil {
		if err := os.Chown(c.Dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("chown %s: %v", c.Dir, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(c.logPath()); err == nil {
				t.Logf("%s server log (tail):\n%s", c.Name, tail(b, 3000))
			}
		}
		c.stop("immediate", false)
	})
	return c
}

func (c *Cluster) logPath() string { return filepath.Join(c.home, "server.log") }

// writeConf appends settings to postgresql.conf, after this cluster's own
// port, socket directory and test settings.
func (c *Cluster) writeConf(extra string) {
	c.t.Helper()
	conf := fmt.Sprintf(`
# custinfo test cluster %s
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
fsync = off
full_page_writes = off
shared_buffers = '32MB'
max_connections = 100
log_line_prefix = '%%m [%%p] %%q%%a '
%s`, c.Name, c.Port, c.home, extra)
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatalf("open postgresql.conf: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		c.t.Fatalf("write postgresql.conf: %v", err)
	}
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	runServerCommand(c.t, 2*time.Minute, filepath.Join(c.bin, "pg_ctl"),
		"-D", c.Dir, "-l", c.logPath(), "-w", "-t", "90", "start")
}

// Stop stops the server with pg_ctl's shutdown mode (smart, fast or
// immediate) and waits until it is down.
func (c *Cluster) Stop(mode string) {
	c.t.Helper()
	c.stop(mode, true)
}

func (c *Cluster) stop(mode string, must bool) {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(c.Dir, "postmaster.pid")); err != nil {
		return // not running
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, err := serverCommand(ctx, filepath.Join(c.bin, "pg_ctl"), "-D", c.Dir, "-m", mode, "-w", "-t", "50", "stop")
	if err == nil {
		var out []byte
		if out, err = cmd.CombinedOutput(); err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
	}
	if err != nil && must {
		c.t.Fatalf("pg_ctl stop %s: %v", c.Name, err)
	}
}

// URL returns a connection URL of database on this server, as user postgres.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, database)
}

// HostPort is the server's address, host:port.
func (c *Cluster) HostPort() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) }

// Exec runs sql on database, failing the test on error.
func (c *Cluster) Exec(database, sql string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL(database))
	if err != nil {
		c.t.Fatalf("connect %s: %v", c.Name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("%s: %s: %v", c.Name, sql, err)
	}
}

// Pool returns a pool to database on this server, closed when the test ends.
func (c *Cluster) Pool(database string) *pgxpool.Pool {
	c.t.Helper()
	pool, err := pgxpool.New(context.Background(), c.URL(database))
	if err != nil {
		c.t.Fatalf("connect %s: %v", c.Name, err)
	}
	c.t.Cleanup(pool.Close)
	return pool
}

// NewDatabase creates a fresh database migrated to the custinfo schema on
// this server (a primary) and returns its name; it goes with the cluster
// when the test ends. Standbys of the server receive it by replication.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("custinfo_%d", dbSeq.Add(1))
	c.Exec("postgres", "CREATE DATABASE "+name)
	pool, err := pgxpool.New(ctx, c.URL(name))
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := store.MigrateUp(ctx, db, io.Discard); err != nil {
		t.Fatalf("migrate %s on %s: %v", name, c.Name, err)
	}
	return name
}

var dbSeq atomic.Int64

// ReplayLSN returns the WAL position a standby has replayed, or the current
// WAL position of a primary, in bytes.
func (c *Cluster) ReplayLSN(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", c.Name, err)
	}
	defer conn.Close(context.Background())
	var lsn int64
	err = conn.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
		ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint`).Scan(&lsn)
	if err != nil {
		return 0, fmt.Errorf("%s: read WAL position: %w", c.Name, err)
	}
	return lsn, nil
}

// WaitReplayed waits until standby has replayed everything c (its
// primary) has written so far.
func (c *Cluster) WaitReplayed(standby *Cluster, within time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	want, err := c.ReplayLSN(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	for {
		got, err := standby.ReplayLSN(ctx)
		if err == nil && got >= want {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("%s did not replay %s's WAL position %d within %s (at %d, err %v)", standby.Name, c.Name, want, within, got, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Proc is a program a test started; it is stopped when the test ends.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  *LogBuffer
	done chan struct{}
	err  error
}

// LogBuffer is a log destination that tests read while a server writes to
// it; it is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// StartProc starts path with args, as the server user when asServer is set
// (PgBouncer refuses to run as root). See StartCmd.
func StartProc(t testing.TB, asServer bool, path string, args ...string) *Proc {
	t.Helper()
	var cmd *exec.Cmd
	if asServer {
		c, err := serverCommand(context.Background(), path, args...)
		if err != nil {
			t.Fatal(err)
		}
		cmd = c
	} else {
		cmd = exec.Command(path, args...)
	}
	return StartCmd(t, cmd)
}

// StartCmd starts cmd, killed with the test process if that dies first. Its
// output is kept for Output and shown when the test fails. When the test
// ends it gets SIGTERM, then SIGKILL after five seconds.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Proc{Name: filepath.Base(cmd.Path), cmd: cmd, log: &LogBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.Name, tail([]byte(p.Output()), 3000))
		}
	})
	return p
}

// Output returns what the program wrote so far.
func (p *Proc) Output() string { return p.log.String() }

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the program's exit error, once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Signal sends sig to the program.
func (p *Proc) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return errors.New("process already exited")
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits for the exit, killing the program when it is
// still running after grace.
func (p *Proc) Stop(grace time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// PgBouncer starts a PgBouncer on a free loopback port in front of the server
// at upstream (host:port), in the given pool mode (session, transaction or
// statement), trusting user postgres, and returns its port. It skips t when
// pgbouncer is not installed.
func PgBouncer(t testing.TB, upstream, mode string) int {
	t.Helper()
	path := NeedBinary(t, "pgbouncer")
	host, port, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatalf("pgbouncer upstream %q: %v", upstream, err)
	}
	dir := serverDir(t, "pgbouncer")
	listen := FreePort(t)
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
pool_mode = %s
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
server_reset_query =
`, host, port, listen, filepath.Join(dir, "userlist.txt"), mode)
	files := map[string]string{"pgbouncer.ini": ini, "userlist.txt": `"postgres" ""` + "\n"}
	cred, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		if cred != nil {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatalf("chown %s: %v", p, err)
			}
		}
	}
	proc := StartProc(t, true, path, filepath.Join(dir, "pgbouncer.ini"))
	WaitListening(t, proc, net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)), 30*time.Second)
	return listen
}

// WaitListening waits until addr accepts TCP connections, failing t when
// proc exits first or within passes.
func WaitListening(t testing.TB, proc *Proc, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-proc.Done():
			t.Fatalf("%s exited before listening on %s: %v\n%s", proc.Name, addr, proc.Err(), proc.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within %s:\n%s", proc.Name, addr, within, proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
