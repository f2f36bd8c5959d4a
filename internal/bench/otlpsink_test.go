package bench

import (
	"net/http"
	"strings"
	"testing"
)

func TestOTLPSink(t *testing.T) {
	t.Parallel()
	s, err := startOTLPSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	post := func(url, body string) int {
		t.Helper()
		resp, err := http.Post(url, "application/x-protobuf", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(s.url, "spans"); got != http.StatusOK {
		t.Errorf("POST /v1/traces: status %d, want 200", got)
	}
	if got := post(strings.TrimSuffix(s.url, "/v1/traces")+"/v1/metrics", "x"); got != http.StatusNotFound {
		t.Errorf("POST /v1/metrics: status %d, want 404", got)
	}
	if s.exports.Load() != 1 || s.bytes.Load() != 5 {
		t.Errorf("sink counted %d exports, %d bytes; want 1 and 5", s.exports.Load(), s.bytes.Load())
	}
	env := strings.Join(s.env(), " ")
	if !strings.Contains(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+s.url) {
		t.Errorf("env %q does not point the server at the sink", env)
	}
}
