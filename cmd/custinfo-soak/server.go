package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is the custinfo serve child process.
type server struct {
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	ops     string // http://127.0.0.1:port of --metrics-addr
	logPath string
	exited  chan struct{} // closed when the process has exited
	waitErr error         // valid after exited
	client  *http.Client  // for health and metrics, without keep-alive
}

// startServer runs binary serve on a free loopback port against dbURL and
// waits until /readyz answers 200.
func startServer(ctx context.Context, binary, dbURL string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	opsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.CreateTemp("", "custinfo-soak-server-*.log")
	if err != nil {
		return nil, fmt.Errorf("server log file: %w", err)
	}
	cmd := exec.Command(binary, "serve", "--addr", addr, "--metrics-addr", opsAddr, "--log-format", "json")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"CUSTINFO_AUDIT_KEY=custinfo-soak-audit-key-5e0b7c1d",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s serve: %w", binary, err)
	}
	s := &server{
		cmd:     cmd,
		base:    "http://" + addr,
		ops:     "http://" + opsAddr,
		logPath: logFile.Name(),
		exited:  make(chan struct{}),
		client:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	go func() {
		defer close(s.exited)
		s.waitErr = cmd.Wait()
		_ = logFile.Close()
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, err := s.get(ctx, s.base+"/readyz"); err == nil && code == http.StatusOK {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("server exited before it was ready (%v); log: %s", s.waitErr, s.logPath)
		case <-ctx.Done():
			s.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("server not ready within 30s; log: %s", s.logPath)
		}
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

func (s *server) get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// usage is the server's resource use at one moment.
type usage struct {
	rssBytes   float64 // -1 when unknown
	goroutines float64 // -1 when unknown
	reloadsOK  float64
	reloadsErr float64
}

// usage reads RSS and goroutines from /metrics (go_goroutines,
// process_resident_memory_bytes), falling back to /proc for RSS.
func (s *server) usage(ctx context.Context) usage {
	u := usage{rssBytes: -1, goroutines: -1}
	if code, body, err := s.get(ctx, s.ops+"/metrics"); err == nil && code == http.StatusOK {
		m := parseMetrics(body)
		if v, ok := m["go_goroutines"]; ok {
			u.goroutines = v
		}
		if v, ok := m["process_resident_memory_bytes"]; ok {
			u.rssBytes = v
		}
		u.reloadsOK = m[`custinfo_config_reloads_total{result="ok"}`]
		u.reloadsErr = m[`custinfo_config_reloads_total{result="error"}`]
	}
	if u.rssBytes < 0 {
		if kb, err := procRSSKiB(s.cmd.Process.Pid); err == nil {
			u.rssBytes = float64(kb) * 1024
		}
	}
	return u
}

// parseMetrics reads the samples of a Prometheus text exposition, keyed by
// name and labels as written.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func procRSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// stop sends SIGTERM and waits for the process to exit; it returns the exit
// status and how long the shutdown took.
func (s *server) stop(timeout time.Duration) (int, time.Duration, error) {
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, 0, fmt.Errorf("send SIGTERM: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.kill()
		return -1, time.Since(start), fmt.Errorf("server did not exit within %v of SIGTERM", timeout)
	}
	return s.cmd.ProcessState.ExitCode(), time.Since(start), nil
}

// kill ends the process at once and waits for it; it is a no-op once the
// process has exited.
func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// logLevels counts the server log's lines by level.
func logLevels(path string) map[string]int {
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		_, rest, ok := strings.Cut(line, `"level":"`)
		if !ok {
			continue
		}
		level, _, _ := strings.Cut(rest, `"`)
		out[level]++
	}
	return out
}
