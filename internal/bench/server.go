package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// benchAuditKey keys the access log's query hashes of the measured servers.
const benchAuditKey = "custinfo-bench-audit-key-8d1e7b"

// serverAudited reports whether the measured servers hash query values in
// the access log: with benchAuditKey unless the environment sets
// CUSTINFO_AUDIT_KEY, which an empty value turns off.
func serverAudited() bool {
	key, ok := os.LookupEnv("CUSTINFO_AUDIT_KEY")
	return !ok || key != ""
}

// server is a custinfo serve child process.
type server struct {
	cmd         *exec.Cmd
	addr        string
	metricsAddr string // where /metrics is served; "" when not asked for
	logPath     string
	exited      chan struct{}
	waitErr     error
}

// startServer starts binary serve on a free loopback port with the given
// extra arguments and environment and waits until /readyz answers 200.
// With metrics set it serves /metrics too, on another free loopback port
// (--metrics-addr), unless args name one.
func startServer(ctx context.Context, binary, databaseURL, dir, name string, args, env []string, metrics bool) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var metricsAddr string
	if metrics {
		if v, ok := flagValue(args, "metrics-addr"); ok {
			metricsAddr = v
			if strings.HasPrefix(v, ":") {
				metricsAddr = "127.0.0.1" + v
			}
		} else {
			if metricsAddr, err = freeAddr(); err != nil {
				return nil, err
			}
			args = append([]string{"--metrics-addr", metricsAddr}, args...)
		}
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create server log: %w", err)
	}
	defer logFile.Close()
	full := append([]string{"serve", "--addr", addr, "--database-url", databaseURL}, args...)
	cmd := exec.Command(binary, full...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = os.Environ()
	if _, ok := os.LookupEnv("CUSTINFO_AUDIT_KEY"); !ok {
		// As in production: every access-log row gets its query hash.
		cmd.Env = append(cmd.Env, "CUSTINFO_AUDIT_KEY="+benchAuditKey)
	}
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	s := &server{cmd: cmd, addr: addr, metricsAddr: metricsAddr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("server %s (%s): %w; its log ends with:\n%s", name, strings.Join(full, " "), err, tail(logPath, 20))
	}
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// waitReady polls /readyz until it answers 200, the process exits, or the
// deadline passes.
func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("exited before ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s", limit)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, waits for the drain, and kills the process if it takes
// longer than 20 s.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return s.exitError()
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
		return s.exitError()
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("server did not stop within 20 s of SIGTERM; killed")
	}
}

func (s *server) exitError() error {
	if s.waitErr != nil {
		return fmt.Errorf("server exited: %w", s.waitErr)
	}
	return nil
}

// flagValue returns the value of flag name (given as -name or --name,
// followed by its value or with =value) in args; the last one counts, as
// for the flag package.
func flagValue(args []string, name string) (string, bool) {
	var v string
	found := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case a == name && i+1 < len(args):
			v, found = args[i+1], true
			i++
		case strings.HasPrefix(a, name+"="):
			v, found = a[len(name)+1:], true
		}
	}
	return v, found
}

// servePoolSize returns the largest number of database connections custinfo
// serve opens with databaseURL and the extra arguments args: pgx's default
// (max(4, CPUs), or pool_max_conns in the URL), unless --pool-max-conns sets
// another, raised to --pool-min-conns.
func servePoolSize(databaseURL string, args []string) (int, error) {
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return 0, fmt.Errorf("parse bench database url: %w", err)
	}
	n := int(pc.MaxConns)
	if v, ok := flagValue(args, "pool-max-conns"); ok {
		m, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("serve argument --pool-max-conns %q: %w", v, err)
		}
		if m > 0 {
			n = m
		}
	}
	if v, ok := flagValue(args, "pool-min-conns"); ok {
		m, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("serve argument --pool-min-conns %q: %w", v, err)
		}
		n = max(n, m)
	}
	return n, nil
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
