package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// otlpSink accepts the OTLP/HTTP trace exports of servers measured with
// tracing on, as a collector would, and counts them; the spans are
// discarded. It stands in for a collector on the same machine.
type otlpSink struct {
	srv     *http.Server
	url     string
	done    chan struct{}
	exports atomic.Int64
	bytes   atomic.Int64
}

// startOTLPSink listens on a free loopback port until close.
func startOTLPSink() (*otlpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("OTLP sink: %w", err)
	}
	s := &otlpSink{url: "http://" + ln.Addr().String() + "/v1/traces", done: make(chan struct{})}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // ends with ErrServerClosed at close
	}()
	return s, nil
}

func (s *otlpSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.exports.Add(1)
	s.bytes.Add(n)
	// An empty body is an empty ExportTraceServiceResponse: all accepted.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// env is the environment that makes a custinfo server export to the sink.
func (s *otlpSink) env() []string {
	return []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + s.url, "OTEL_SERVICE_NAME=custinfo-bench"}
}

func (s *otlpSink) close() {
	_ = s.srv.Close()
	<-s.done
}
