package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
)

// kind is a class of request of the mixed load.
type kind int

const (
	kindValid        kind = iota // signed lookup of an existing customer
	kindMiss                     // signed lookup of a number nobody has
	kindBadSignature             // wrong key, tampered body, missing or mangled signature
	kindHostile                  // signed garbage bodies, and one over the size limit
	kindBadTimestamp             // stale, future, malformed or missing X-TC-Timestamp
	kindProbe                    // the key rotator's checks of a new and a revoked key
	numKinds
)

var kindNames = [numKinds]string{"valid", "miss", "bad-signature", "hostile", "bad-timestamp", "key-probe"}

// kindWeights is the mix of the load, in percent.
var kindWeights = [...]struct {
	k kind
	w int
}{{kindValid, 50}, {kindMiss, 15}, {kindBadSignature, 10}, {kindHostile, 15}, {kindBadTimestamp, 10}}

// customer is a demo customer the load looks up.
type customer struct {
	digits string // the 8 digits after 010
	name   string
	no     string
}

// apiKey is a key of custinfo.api_keys the load signs with.
type apiKey struct {
	id     int64
	secret []byte
	// revoking is set just before the key is revoked: from then on a 403
	// for a request signed with it is expected.
	revoking atomic.Bool
}

// request is one request of the load and what may come back.
type request struct {
	kind   kind
	lookup string
	body   []byte
	ts     *string // nil: no X-TC-Timestamp header
	auth   *string // nil: no Authorization header
	key    *apiKey // the key that signed it, if any
	want   []int   // acceptable statuses
	// customer, for kindValid: the answer must name this customer.
	customer *customer
}

// outcome is what one request got.
type outcome struct {
	status  int // 0: no HTTP response
	latency time.Duration
	problem string // why the answer is unexpected; "" when it is fine
	revoked bool   // a 403 explained by a key being revoked
}

// tally counts outcomes; each worker keeps its own, merged at the end.
type tally struct {
	statuses   [numKinds]map[int]int64
	latencies  [numKinds][]time.Duration
	unexpected int64
	revoked403 int64
	examples   []string
}

func newTally() *tally {
	t := &tally{}
	for i := range t.statuses {
		t.statuses[i] = map[int]int64{}
	}
	return t
}

func (t *tally) add(k kind, o outcome) {
	t.statuses[k][o.status]++
	if o.status != 0 {
		t.latencies[k] = append(t.latencies[k], o.latency)
	}
	if o.revoked {
		t.revoked403++
	}
	if o.problem != "" {
		t.unexpected++
		if len(t.examples) < 10 {
			t.examples = append(t.examples, kindNames[k]+": "+o.problem)
		}
	}
}

func (t *tally) merge(o *tally) {
	for k := range numKinds {
		for s, n := range o.statuses[k] {
			t.statuses[k][s] += n
		}
		t.latencies[k] = append(t.latencies[k], o.latencies[k]...)
	}
	t.unexpected += o.unexpected
	t.revoked403 += o.revoked403
	for _, e := range o.examples {
		if len(t.examples) < 20 {
			t.examples = append(t.examples, e)
		}
	}
}

// answered returns the number of lookup requests that got an HTTP response.
func (t *tally) answered() int64 {
	var n int64
	for k := range numKinds {
		for s, c := range t.statuses[k] {
			if s != 0 {
				n += c
			}
		}
	}
	return n
}

// loader builds and sends the load's requests.
type loader struct {
	base      string
	client    *http.Client
	customers []customer
	misses    []string
	maxBody   int
	cur       atomic.Pointer[apiKey]
}

// next builds a request of a kind drawn from the mix.
func (l *loader) next(r *mrand.Rand) request {
	n := r.IntN(100)
	for _, kw := range kindWeights {
		if n < kw.w {
			return l.build(r, kw.k)
		}
		n -= kw.w
	}
	return l.build(r, kindValid)
}

func (l *loader) build(r *mrand.Rand, k kind) request {
	key := l.cur.Load()
	now := time.Now()
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	req := request{kind: k, lookup: "customer", ts: &ts, key: key, want: []int{http.StatusOK}}
	if r.IntN(2) == 0 {
		req.lookup = "customer_card"
	}
	switch k {
	case kindValid:
		c := &l.customers[r.IntN(len(l.customers))]
		req.customer = c
		req.body = phoneBody(r, c.digits)
	case kindMiss:
		req.body = phoneBody(r, l.misses[r.IntN(len(l.misses))])
		req.want = []int{http.StatusNotFound}
	case kindBadSignature:
		req.lookup = "customer"
		req.body = phoneBody(r, l.customers[r.IntN(len(l.customers))].digits)
		req.want = []int{http.StatusForbidden}
		req.key = nil
		var sig string
		switch r.IntN(5) {
		case 0: // a key nobody installed
			sig = signature.Sign([]byte("not-the-key-"+strconv.Itoa(r.IntN(1000))), signature.SchemeBody, "", req.body, ts)
		case 1: // signed, then the body changed in transit
			sig = signature.Sign(key.secret, signature.SchemeBody, "", req.body, ts)
			req.body = phoneBody(r, l.misses[r.IntN(len(l.misses))])
		case 2: // no Authorization header
			return req
		case 3: // a prefix the helpdesk never sends
			sig = "Bearer " + signature.Sign(key.secret, signature.SchemeBody, "", req.body, ts)
		default: // hex instead of Base64
			mac := hmac.New(sha256.New, key.secret)
			mac.Write(signature.Message(signature.SchemeBody, "", req.body, ts))
			sig = hex.EncodeToString(mac.Sum(nil))
		}
		req.auth = &sig
		return req
	case kindHostile:
		req.lookup = "customer"
		h := hostileBodies[r.IntN(len(hostileBodies))]
		req.body, req.want = h.body, h.want
		if h.body == nil { // the one over the limit
			req.body = bytes.Repeat([]byte(" "), l.maxBody+1000)
			copy(req.body, `{"callNum":"010-1234-5678","pad":"`)
		}
	case kindBadTimestamp:
		req.lookup = "customer"
		req.body = phoneBody(r, l.customers[r.IntN(len(l.customers))].digits)
		req.want = []int{http.StatusBadRequest}
		switch r.IntN(8) {
		case 0:
			ts = strconv.FormatInt(now.Add(-10*time.Minute).UnixMilli(), 10)
		case 1:
			ts = strconv.FormatInt(now.Add(10*time.Minute).UnixMilli(), 10)
		case 2:
			ts = strconv.FormatInt(now.Unix(), 10) // seconds, not milliseconds
		case 3:
			ts = "abc"
		case 4:
			ts = "123456789012345678901234567890"
		case 5:
			ts = "-" + ts
		case 6:
			ts = ""
		default:
			req.ts = nil
		}
	}
	sig := signature.Sign(key.secret, signature.SchemeBody, "", req.body, ts)
	req.auth = &sig
	return req
}

// phoneBody returns a request body for the number 010-dddd-dddd, spelled
// one of the ways helpdesks send it.
func phoneBody(r *mrand.Rand, digits string) []byte {
	a, b := digits[:4], digits[4:]
	var num string
	switch r.IntN(5) {
	case 0:
		num = "010-" + a + "-" + b
	case 1:
		num = "010" + digits
	case 2:
		num = "+82 10-" + a + "-" + b
	case 3:
		num = "+8210" + digits
	default:
		num = "010 " + a + " " + b
	}
	switch r.IntN(3) {
	case 0:
		return []byte(`{"callNum":"` + num + `","nation":"82"}`)
	case 1:
		return []byte(`{"callNum":"` + num + `","nation":82,"agentId":"a-17"}`)
	default:
		return []byte(`{"callNum":"` + num + `"}`)
	}
}

// hostileBodies are signed bodies that must be refused with a 4xx. A nil
// body stands for one over the size limit.
var hostileBodies = []struct {
	body []byte
	want []int
}{
	{[]byte(`{"callNum":`), []int{400}},
	{[]byte(`[{"callNum":"010-1234-5678"}]`), []int{400}},
	{[]byte(`"010-1234-5678"`), []int{400}},
	{[]byte(`12345`), []int{400}},
	{[]byte(`{"callNum":{"n":"010-1234-5678"}}`), []int{400}},
	{[]byte(`{"callNum":["010-1234-5678"]}`), []int{400}},
	{[]byte(`{"callNum":"010-1234-5678","callNum":"010-1234-5678"}`), []int{400}},
	{[]byte(`{"callNum":"010-1234-5678"} {}`), []int{400}},
	{[]byte("{\"callNum\":\"010\xff\xfe1234\"}"), []int{400}},
	{[]byte("{\"callNum\":\"010\x001234\"}"), []int{400}},
	{[]byte(`{"callNum":"010\u00001234"}`), []int{400, 404}},
	{[]byte(`{"callNum":1e999999}`), []int{400, 404}},
	{[]byte(`{"callNum":"` + strings.Repeat("1", 20000) + `"}`), []int{400, 404}},
	{[]byte(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `,"callNum":"010-1234-5678"}`), []int{400, 404}},
	{[]byte(`{"callNum":""}`), []int{400}},
	{[]byte(``), []int{400}},
	{[]byte("  \n "), []int{400}},
	{nil, []int{413}},
}

// send sends req and judges the answer.
func (l *loader) send(ctx context.Context, req request) outcome {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, l.base+"/v1/lookups/"+req.lookup, bytes.NewReader(req.body))
	if err != nil {
		return outcome{problem: err.Error()}
	}
	hreq.Header.Set("Content-Type", "application/json")
	if req.ts != nil {
		hreq.Header.Set("X-TC-Timestamp", *req.ts)
	}
	if req.auth != nil {
		hreq.Header.Set("Authorization", *req.auth)
	}
	start := time.Now()
	resp, err := l.client.Do(hreq)
	if err != nil {
		return outcome{latency: time.Since(start), problem: "no response: " + err.Error()}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	o := outcome{status: resp.StatusCode, latency: time.Since(start)}
	if err != nil {
		o.problem = fmt.Sprintf("%d with an unreadable body: %v", resp.StatusCode, err)
		return o
	}
	var env struct {
		Data  map[string]string `json:"data"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	switch {
	case json.Unmarshal(body, &env) != nil:
		o.problem = fmt.Sprintf("%d with a body that is not JSON: %.200q", resp.StatusCode, bytes.TrimSpace(body))
		return o
	case resp.StatusCode == http.StatusOK && env.Data == nil:
		o.problem = fmt.Sprintf("200 without data: %.200s", bytes.TrimSpace(body))
		return o
	case resp.StatusCode != http.StatusOK && (env.Error == nil || env.Error.Code == "" || env.Error.Message == ""):
		o.problem = fmt.Sprintf("%d without the error envelope: %.200s", resp.StatusCode, bytes.TrimSpace(body))
		return o
	}
	if resp.StatusCode == http.StatusForbidden && req.key != nil && req.key.revoking.Load() {
		o.revoked = true // signed with a key being revoked: refusing it is right
		return o
	}
	if !slices.Contains(req.want, resp.StatusCode) {
		o.problem = fmt.Sprintf("%s %.100q: %d, want %v: %.200s", req.lookup, req.body, resp.StatusCode, req.want, bytes.TrimSpace(body))
		return o
	}
	if c := req.customer; c != nil && resp.StatusCode == http.StatusOK && (env.Data["userName"] != c.name || env.Data["id"] != c.no) {
		o.problem = fmt.Sprintf("%s %.100q: answer %v, want userName %q and id %q", req.lookup, req.body, env.Data, c.name, c.no)
	}
	return o
}

// newSecret returns a fresh random key string, as the helpdesk generates.
func newSecret() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
