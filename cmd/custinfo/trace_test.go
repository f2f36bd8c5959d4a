package main

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/phone"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the protobuf
// export requests sent to /v1/traces and keeps their spans.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	resource []*commonpb.KeyValue
	errs     []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) fail(w http.ResponseWriter, format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	http.Error(w, "bad request", http.StatusBadRequest)
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		r.fail(w, "%s %s, want POST /v1/traces", req.Method, req.URL.Path)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.fail(w, "Content-Type %q, want application/x-protobuf", ct)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, 16<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(body)
		if err != nil {
			r.fail(w, "gzip: %v", err)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		r.fail(w, "read export request: %v", err)
		return
	}
	var export coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &export); err != nil {
		r.fail(w, "decode export request: %v", err)
		return
	}
	r.mu.Lock()
	for _, rs := range export.ResourceSpans {
		r.resource = append(r.resource, rs.GetResource().GetAttributes()...)
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// attrString returns an attribute's value as text.
func attrString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	default:
		return v.String()
	}
}

func spanAttrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes {
		m[kv.Key] = attrString(kv.Value)
	}
	return m
}

// TestTracing runs serve with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT naming an
// in-process receiver, sends a signed lookup carrying a traceparent, one
// without, and one with a wrong key, and checks the spans received after
// shutdown: names, parent and child links, the caller's trace continued,
// attributes naming the lookup and outcome, and no attribute holding the
// asked number's digits or a key.
func TestTracing(t *testing.T) {
	t.Parallel()
	recv := newOTLPReceiver(t)
	env := map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv.URL + "/v1/traces", "OTEL_SERVICE_NAME": "custinfo-test"}
	s := opsStart(t, serveFlags{
		databaseURL: opsSeed(t),
		metricsAddr: "127.0.0.1:0",
		coalesce:    true,
		getenv:      func(k string) string { return env[k] },
	})

	const wrongKey = "not-the-key-of-this-server"
	const missing = "010-5555-2468"
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const callerSpan = "00f067aa0ba902b7"
	requests := []struct {
		name, key, body, traceparent string
		want                         int
	}{
		{"found, in the caller's trace", opsKey, `{"callNum":"` + opsPhone + `","nation":"82"}`, "00-" + callerTrace + "-" + callerSpan + "-01", 200},
		{"not found", opsKey, `{"callNum":"` + missing + `","nation":"82"}`, "", 404},
		{"wrong key", wrongKey, `{"callNum":"` + opsPhone + `"}`, "", 403},
	}
	for i, tt := range requests {
		req := opsLookup(t, s.base, "customer", tt.key, tt.body, "")
		req.Header.Set("X-Request-Id", fmt.Sprintf("trace-test-%c", 'a'+i))
		if tt.traceparent != "" {
			req.Header.Set("traceparent", tt.traceparent)
		}
		if status, body := opsDo(t, opsClient, req); status != tt.want {
			t.Fatalf("%s: status %d (%s), want %d", tt.name, status, body, tt.want)
		}
	}
	// Health checks and scrapes are not traced.
	opsGet(t, opsClient, s.base+"/readyz")
	opsGet(t, opsClient, s.metricsBase+"/metrics")
	if err := s.stop(); err != nil { // flushes the spans
		t.Fatalf("serve: %v", err)
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, e := range recv.errs {
		t.Errorf("OTLP receiver: %s", e)
	}
	byID := map[string]*tracepb.Span{}
	children := map[string][]string{}
	var roots []*tracepb.Span
	for _, sp := range recv.spans {
		byID[hex.EncodeToString(sp.SpanId)] = sp
		if sp.Name == httpapi.SpanLookup {
			roots = append(roots, sp)
		}
	}
	for _, sp := range recv.spans {
		if p := hex.EncodeToString(sp.ParentSpanId); byID[p] != nil {
			children[p] = append(children[p], sp.Name)
			if string(byID[p].TraceId) != string(sp.TraceId) {
				t.Errorf("span %s is a child of %s in another trace", sp.Name, byID[p].Name)
			}
		} else if sp.Name != httpapi.SpanLookup {
			t.Errorf("span %s has no parent among the received spans", sp.Name)
		}
	}
	if len(roots) != len(requests) {
		names := []string{}
		for _, sp := range recv.spans {
			names = append(names, sp.Name)
		}
		t.Fatalf("received %d request spans (all spans: %q), want %d, one per lookup request", len(roots), names, len(requests))
	}
	find := func(reqID string) *tracepb.Span {
		for _, sp := range roots {
			if spanAttrs(sp)["custinfo.request_id"] == reqID {
				return sp
			}
		}
		t.Fatalf("no request span with custinfo.request_id %s", reqID)
		return nil
	}
	tests := []struct {
		reqID, lookup, code, status string
		children                    []string
		parent                      string
	}{
		{"trace-test-a", "customer", "ok", "200", []string{httpapi.SpanSignature, httpapi.SpanBind, "db.query"}, callerSpan},
		{"trace-test-b", "customer", "no_data", "404", []string{httpapi.SpanSignature, httpapi.SpanBind, "db.query"}, ""},
		{"trace-test-c", httpapi.UnknownLookup, "access_denied", "403", []string{httpapi.SpanSignature}, ""},
	}
	for _, tt := range tests {
		sp := find(tt.reqID)
		a := spanAttrs(sp)
		if a["custinfo.lookup"] != tt.lookup || a["custinfo.code"] != tt.code || a["http.response.status_code"] != tt.status {
			t.Errorf("%s: attributes %v, want custinfo.lookup=%s custinfo.code=%s http.response.status_code=%s", tt.reqID, a, tt.lookup, tt.code, tt.status)
		}
		if sp.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: kind %v, want server", tt.reqID, sp.Kind)
		}
		if got := hex.EncodeToString(sp.ParentSpanId); got != tt.parent {
			t.Errorf("%s: parent span %q, want %q", tt.reqID, got, tt.parent)
		}
		if tt.parent != "" && hex.EncodeToString(sp.TraceId) != callerTrace {
			t.Errorf("%s: trace %x, want the caller's %s from traceparent", tt.reqID, sp.TraceId, callerTrace)
		}
		got := children[hex.EncodeToString(sp.SpanId)]
		if strings.Join(got, ",") != strings.Join(tt.children, ",") {
			t.Errorf("%s: child spans %q, want %q", tt.reqID, got, tt.children)
		}
	}
	denied := hex.EncodeToString(find("trace-test-c").SpanId)
	for _, sp := range recv.spans {
		if sp.Name == httpapi.SpanSignature && hex.EncodeToString(sp.ParentSpanId) == denied && sp.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("the wrong key's %s span has status %v, want error", sp.Name, sp.Status)
		}
		if sp.Name == "db.query" {
			if a := spanAttrs(sp); !strings.Contains(a["db.query.text"], "$1") || a["db.system.name"] != "postgresql" {
				t.Errorf("db.query attributes %v, want the SQL text with its $1 parameter and db.system.name=postgresql", a)
			}
		}
	}

	// Nothing the caller asked for and no key: no run of 6 digits of any
	// spelling of the numbers, no key, in any attribute or name.
	var secrets []string
	for _, n := range []string{opsPhone, missing} {
		d := phone.Digits(n)
		for _, digits := range []string{d, "82" + strings.TrimPrefix(d, "0")} {
			for i := 0; i+6 <= len(digits); i++ {
				secrets = append(secrets, digits[i:i+6])
			}
		}
	}
	check := func(where, v string) {
		for _, key := range []string{opsKey, wrongKey} {
			if strings.Contains(v, key) {
				t.Errorf("%s holds a key: %q", where, v)
			}
		}
		d := phone.Digits(v)
		for _, sec := range secrets {
			if strings.Contains(d, sec) {
				t.Errorf("%s holds digits %s of an asked number: %q", where, sec, v)
				return
			}
		}
	}
	for _, sp := range recv.spans {
		check("span name", sp.Name)
		for _, kv := range sp.Attributes {
			check("attribute "+kv.Key+" of "+sp.Name, attrString(kv.Value))
		}
		for _, ev := range sp.Events {
			for _, kv := range ev.Attributes {
				check("event attribute "+kv.Key+" of "+sp.Name, attrString(kv.Value))
			}
		}
		check("status of "+sp.Name, sp.Status.GetMessage())
	}
	for _, kv := range recv.resource {
		check("resource attribute "+kv.Key, attrString(kv.Value))
		if kv.Key == "service.name" && attrString(kv.Value) != "custinfo-test" {
			t.Errorf("service.name %q, want OTEL_SERVICE_NAME's custinfo-test", attrString(kv.Value))
		}
	}
}
