// Package httpapi serves the helpdesk's signed lookups over HTTP with Echo:
// routes, body limits, the signature check, the one error mapper, health.
// New returns an http.Handler, so nothing else imports Echo.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/phone"
	"github.com/custinfo/custinfo/internal/signature"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBody         = 64 << 10
	DefaultTimestampWindow = 5 * time.Minute
	DefaultQueryTimeout    = 2 * time.Second
)

// Config wires the handler to the rest of the service.
type Config struct {
	Logger *slog.Logger
	// SnapshotFunc returns the current configuration; nil before the first load.
	SnapshotFunc func() *lookup.Snapshot
	// DB runs the lookups' queries.
	DB lookup.Querier
	// ReadyFunc reports whether the service can answer lookups (database
	// reachable, configuration loaded); nil means always ready.
	ReadyFunc func(ctx context.Context) error
	// ReplicasFunc, when set, names the read replicas that answer lookups
	// and those skipped, for the body of /readyz.
	ReplicasFunc func() (inUse, skipped []string)
	// NowFunc is the clock; nil means time.Now.
	NowFunc         func() time.Time
	TimestampWindow time.Duration
	MaxBody         int64
	QueryTimeout    time.Duration
	// IPExtractor finds the client address; nil means the socket peer.
	IPExtractor echo.IPExtractor
	// DoneFunc, when set, is called once per lookup request after the response
	// is written (access log, metrics). It must not block.
	DoneFunc func(*Outcome)
	// Extra registers more routes (metrics) on the same router.
	Extra func(e *echo.Echo)
	// Metrics, when set, counts every lookup request.
	Metrics *Metrics
	// Coalescer, when set, runs the lookups, answering requests for the same
	// lookup that wait while its queries run with one query.
	Coalescer *lookup.Coalescer
	// Replay says which reuses of a verified signature within the timestamp
	// window are refused: by default its use on another lookup.
	Replay ReplayMode
	// ReplayCapacity bounds the signatures remembered for that; 0 means
	// DefaultReplayCapacity.
	ReplayCapacity int
	// Tracer, when set, traces each lookup request (trace.go); nil turns
	// tracing off at the cost of a nil check.
	Tracer trace.Tracer
}

// Outcome describes one answered lookup request.
type Outcome struct {
	At        time.Time
	RequestID string
	Lookup    string
	KeyID     int64 // 0 when no key verified the request
	// Verified is set once a key verified the request's signature for
	// Lookup; before that the request has proved nothing, and the metrics
	// count it without its lookup's name.
	Verified bool
	ClientIP netip.Addr
	Status   int
	Code     string // "ok" on success
	Latency  time.Duration
	Query    string // the query field's value, in clear: mask before storing
	// QueryNormalized is Query's E.164 form when the lookup read it as a
	// phone number (in the region it read it in), else "".
	QueryNormalized string
	Matches         int64
	Reason          string // why a request failed, for the log; never a secret
}

type server struct {
	cfg       Config
	diagnoses diagnoseLimit
	replay    *replayGuard
	// verify is signature.Verify; tests count its calls.
	verify func(keys []signature.Key, path string, body []byte, ts, sig string) (signature.Key, error)
	// decoys is a random key no request is signed with, verified against
	// on the paths that refuse a request before trying its lookup's keys.
	decoys []signature.Key
}

// newDecoys returns one random key that verifies the body scheme, as a
// helpdesk key does.
func newDecoys() []signature.Key {
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	return []signature.Key{{Secret: []byte(hex.EncodeToString(secret)), Schemes: []signature.Scheme{signature.SchemeBody}}}
}

// diagnosesPerSecond bounds the work spent naming the mistake behind refused
// signatures (signature.Diagnose): past it, a 403 is logged without one.
const diagnosesPerSecond = 20

// diagnoseLimit allows diagnosesPerSecond diagnoses per wall-clock second.
type diagnoseLimit struct {
	mu     sync.Mutex
	second int64
	n      int
}

func (l *diagnoseLimit) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec := now.Unix(); sec != l.second {
		l.second, l.n = sec, 0
	}
	l.n++
	return l.n <= diagnosesPerSecond
}

// New returns the HTTP handler of the service.
func New(cfg Config) http.Handler {
	return newServer(cfg).handler()
}

// newServer returns the server of cfg, its zero fields given their defaults.
func newServer(cfg Config) *server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.TimestampWindow <= 0 {
		cfg.TimestampWindow = DefaultTimestampWindow
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	s := &server{
		cfg:    cfg,
		replay: newReplayGuard(cfg.Replay, cfg.TimestampWindow, cfg.ReplayCapacity),
		verify: signature.Verify,
		decoys: newDecoys(),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.replay.Store(s.replay)
	}
	return s
}

// handler returns the routes of s.
func (s *server) handler() http.Handler {
	cfg := s.cfg
	e := echo.NewWithConfig(echo.Config{
		Logger:           cfg.Logger,
		IPExtractor:      cfg.IPExtractor,
		HTTPErrorHandler: func(c *echo.Context, err error) { writeError(c, err) },
	})
	e.Use(s.logRequests)
	e.POST("/v1/lookups/:name", s.lookup)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if cfg.Extra != nil {
		cfg.Extra(e)
	}
	return e
}

// logRequests writes the error envelope for a failed request and logs one line
// per request; lookup requests also go to DoneFunc.
func (s *server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := s.cfg.NowFunc()
		r := c.Request()
		o := &Outcome{At: start, RequestID: requestID(r), Status: http.StatusOK, Code: "ok"}
		c.Response().Header().Set("X-Request-Id", o.RequestID)
		c.Set("outcome", o)
		span := s.startRequestSpan(c)
		err := next(c)
		if err != nil {
			ae := writeError(c, err)
			o.Status, o.Code = ae.Status, ae.Code
			if o.Reason == "" {
				o.Reason = err.Error()
			}
		}
		o.Latency = s.cfg.NowFunc().Sub(start)
		if !o.ClientIP.IsValid() {
			if ip, perr := netip.ParseAddr(c.RealIP()); perr == nil {
				o.ClientIP = ip
			}
		}
		s.logOutcome(r, o)
		if o.Lookup != "" && s.cfg.DoneFunc != nil {
			s.cfg.DoneFunc(o)
		}
		if o.Lookup != "" && s.cfg.Metrics != nil {
			s.cfg.Metrics.observe(o)
		}
		endRequestSpan(span, o)
		return nil
	}
}

func (s *server) logOutcome(r *http.Request, o *Outcome) {
	level := slog.LevelInfo
	switch {
	case o.Status >= 500:
		level = slog.LevelError
	case o.Lookup == "" && o.Status < 400:
		level = slog.LevelDebug // health checks and metric scrapes, every few seconds
	}
	if !s.cfg.Logger.Enabled(r.Context(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", o.RequestID),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", o.Status),
		slog.String("code", o.Code),
		slog.Float64("latency_ms", float64(o.Latency.Microseconds())/1000),
		slog.String("client_ip", o.ClientIP.String()),
	}
	if o.Lookup != "" {
		attrs = append(attrs, slog.String("lookup", o.Lookup))
	}
	if o.KeyID != 0 {
		attrs = append(attrs, slog.Int64("key_id", o.KeyID))
	}
	if o.Query != "" {
		attrs = append(attrs, slog.String("query", phone.Mask(o.Query)))
	}
	if o.Matches > 0 {
		attrs = append(attrs, slog.Int64("matches", o.Matches))
	}
	if o.Reason != "" {
		attrs = append(attrs, slog.String("reason", o.Reason))
	}
	s.cfg.Logger.LogAttrs(r.Context(), level, "request", attrs...)
}

// requestID returns the caller's X-Request-Id when it is short and plain,
// else a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && plainID(id) {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func plainID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func outcomeOf(c *echo.Context) *Outcome {
	if o, ok := c.Get("outcome").(*Outcome); ok {
		return o
	}
	return &Outcome{}
}

// lookup answers POST /v1/lookups/:name.
func (s *server) lookup(c *echo.Context) error {
	r := c.Request()
	o := outcomeOf(c)
	name := c.Param("name")
	o.Lookup = name
	now := s.cfg.NowFunc()

	body, err := readBody(r, s.cfg.MaxBody)
	if err != nil {
		return err
	}
	tsValues := r.Header.Values("X-TC-Timestamp")
	if len(tsValues) > 1 {
		return &signature.TimestampError{Reason: signature.ReasonMalformed, Detail: "X-TC-Timestamp appears more than once"}
	}
	ts := ""
	if len(tsValues) == 1 {
		ts = tsValues[0]
	}
	stamped, err := signature.ParseTimestamp(ts, now, s.cfg.TimestampWindow)
	if err != nil {
		return err
	}

	auth := r.Header.Values("Authorization")
	sig := ""
	if len(auth) == 1 {
		sig = auth[0]
	}
	// deny refuses a request before any of its lookup's keys is tried,
	// after the work of a verification that fails, so the time of the
	// answer does not tell an unknown lookup from a wrong signature.
	// The diagnosis of a wrong signature is mirrored too, within the same
	// budget: otherwise the slower answers would name the lookups that exist.
	deny := func(reason string) error {
		_, err := s.verify(s.decoys, signedPath(r), body, ts, sig)
		if errors.Is(err, signature.ErrMismatch) && s.diagnoses.allow(now) {
			_ = signature.Diagnose(s.decoys, signedPath(r), body, ts, sig)
		}
		return &deniedError{Reason: reason}
	}

	snap := s.snapshot()
	if snap == nil {
		return errors.New("configuration not loaded yet")
	}
	l, ok := snap.Get(name)
	switch {
	case !ok:
		return deny("unknown lookup")
	case !l.Enabled:
		return deny("lookup is disabled")
	}
	ip, err := netip.ParseAddr(c.RealIP())
	if err != nil || !l.Allows(ip) {
		return deny("client address " + c.RealIP() + " is outside allowed_networks")
	}
	o.ClientIP = ip
	keys := snap.Keys(l, now)
	if len(keys) == 0 {
		return deny("no active key for this lookup")
	}
	if len(auth) > 1 {
		return deny("Authorization appears more than once")
	}
	span := s.startSpan(r.Context(), SpanSignature)
	key, err := s.verify(keys, signedPath(r), body, ts, sig)
	endSpan(span, err)
	if err != nil {
		reason := err.Error()
		if errors.Is(err, signature.ErrMismatch) && s.diagnoses.allow(now) {
			if d := signature.Diagnose(keys, signedPath(r), body, ts, sig); d != "" {
				reason += "; " + d
			}
		}
		return &deniedError{Reason: reason}
	}
	o.KeyID = key.ID
	if err := s.replay.check(sig, l.Name, stamped, now); err != nil {
		return &deniedError{Reason: err.Error()}
	}
	o.Verified = true

	span = s.startSpan(r.Context(), SpanBind)
	values, err := decodeFields(body, l.Wants)
	var p lookup.Prepared
	if err == nil {
		o.Query = values[l.QueryField()]
		p, err = l.Bind(values)
	}
	endSpan(span, err)
	if err != nil {
		return err
	}
	o.QueryNormalized = p.Normalized
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	var res lookup.Result
	if s.cfg.Coalescer != nil {
		res, err = s.cfg.Coalescer.Exec(ctx, l, p)
	} else {
		res, err = l.Exec(ctx, s.cfg.DB, p)
	}
	if err != nil {
		if r.Context().Err() != nil {
			return &clientGoneError{Err: err}
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return &timeoutError{After: s.cfg.QueryTimeout.String(), Err: err}
		}
		return err
	}
	o.Matches = res.Matches
	bp := answerBufs.Get().(*[]byte)
	defer answerBufs.Put(bp)
	*bp = appendData((*bp)[:0], res.Fields)
	h := c.Response().Header()
	h[echo.HeaderContentType] = jsonContentType
	h["Cache-Control"] = noStore
	return c.JSONBlob(http.StatusOK, *bp) // copied into the connection's buffer
}

// answerBufs holds the buffers answers are encoded into.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Header values of every answer, shared: net/http only reads them.
var (
	jsonContentType = []string{echo.MIMEApplicationJSON}
	noStore         = []string{"no-store"}
)

// signedPath is the request path as the client sent it, without the query
// string: what Java's getRequestURI gives, for the uri_body scheme. A request
// line in absolute form (POST http://host/path) contributes only its path.
func signedPath(r *http.Request) string {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		return r.URL.EscapedPath()
	}
	path, _, _ := strings.Cut(uri, "?")
	return path
}

func (s *server) snapshot() *lookup.Snapshot {
	if s.cfg.SnapshotFunc == nil {
		return nil
	}
	return s.cfg.SnapshotFunc()
}

func (s *server) healthz(c *echo.Context) error {
	return c.JSONBlob(http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
}

func (s *server) readyz(c *echo.Context) error {
	reason := ""
	if s.snapshot() == nil {
		reason = "configuration not loaded"
	} else if s.cfg.ReadyFunc != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
		defer cancel()
		if err := s.cfg.ReadyFunc(ctx); err != nil {
			reason = err.Error()
		}
	}
	if reason != "" {
		buf := append([]byte(`{"status":"unavailable","reason":`), appendString(nil, reason)...)
		return c.JSONBlob(http.StatusServiceUnavailable, append(buf, "}\n"...))
	}
	if s.cfg.ReplicasFunc == nil {
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
	}
	inUse, skipped := s.cfg.ReplicasFunc()
	buf := []byte(`{"status":"ready","replicas_in_use":`)
	buf = appendStrings(buf, inUse)
	buf = append(buf, `,"replicas_skipped":`...)
	buf = appendStrings(buf, skipped)
	return c.JSONBlob(http.StatusOK, append(buf, "}\n"...))
}

func appendStrings(buf []byte, ss []string) []byte {
	buf = append(buf, '[')
	for i, v := range ss {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, v)
	}
	return append(buf, ']')
}
