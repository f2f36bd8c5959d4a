package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/pgtest"
)

// cliRun runs the program with args and stdin, as main would, and returns
// what it printed and its error.
func cliRun(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func cliMust(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := cliRun(t, stdin, args...)
	if err != nil {
		t.Fatalf("custinfo %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// cliDemo returns the URL of a fresh database holding the demo with a few rows.
func cliDemo(t *testing.T, key string) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.URL(t)
	cliMust(t, "", "demo", "--database-url", url, "--rows", "2000", "--key", key)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return url, pool
}

func TestCLIMigrate(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	if out := cliMust(t, "", "migrate", "status", "--database-url", url); !strings.Contains(out, "00002_config_notify.sql") || strings.Contains(out, "pending") {
		t.Errorf("migrate status on a migrated database:\n%s", out)
	}
	cliMust(t, "", "migrate", "down", "--database-url", url)
	if out := cliMust(t, "", "migrate", "status", "--database-url", url); !strings.Contains(out, "pending") {
		t.Errorf("migrate status after down shows nothing pending:\n%s", out)
	}
	if out := cliMust(t, "", "migrate", "up", "--database-url", url); !strings.Contains(out, "applied") {
		t.Errorf("migrate up after down applied nothing:\n%s", out)
	}
	if _, _, err := cliRun(t, "", "migrate", "sideways", "--database-url", url); err == nil {
		t.Error("migrate sideways succeeded")
	}
}

func TestCLIKeys(t *testing.T) {
	t.Parallel()
	const demoKey = "bf7769e5321448de88838cdb"
	url, pool := cliDemo(t, demoKey)
	const secret = "c0ffee00c0ffee00c0ffee00"
	out := cliMust(t, secret+"\r\n", "keys", "add", "--database-url", url, "--lookup", "customer", "--label", "helpdesk")
	if strings.Contains(out, secret) {
		t.Errorf("keys add printed the secret it read: %s", out)
	}
	var stored string
	if err := pool.QueryRow(context.Background(), `SELECT secret FROM custinfo.api_keys WHERE label = 'helpdesk'`).Scan(&stored); err != nil || stored != secret {
		t.Errorf("stored secret = %q (%v), want %q without the line ending", stored, err, secret)
	}
	list := cliMust(t, "", "keys", "list", "--database-url", url)
	if strings.Contains(list, secret) || strings.Contains(list, demoKey) {
		t.Errorf("keys list shows a secret:\n%s", list)
	}
	if !strings.Contains(list, "helpdesk") || !strings.Contains(list, fingerprint(secret)) || !strings.Contains(list, "active") {
		t.Errorf("keys list lacks the new key's label, fingerprint or state:\n%s", list)
	}
	id := regexp.MustCompile(`added key (\d+)`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("keys add output has no id: %s", out)
	}
	cliMust(t, "", "keys", "revoke", "--database-url", url, id[1])
	if list := cliMust(t, "", "keys", "list", "--database-url", url); !strings.Contains(list, "revoked") {
		t.Errorf("keys list after revoke:\n%s", list)
	}
	if _, _, err := cliRun(t, "", "keys", "revoke", "--database-url", url, id[1]); err == nil {
		t.Error("revoking a revoked key succeeded")
	}
	if _, _, err := cliRun(t, secret, "keys", "add", "--database-url", url, "--lookup", "nope"); err == nil || !strings.Contains(err.Error(), "no lookup named") {
		t.Errorf("keys add for an unknown lookup: %v", err)
	}
	if _, _, err := cliRun(t, "two words", "keys", "add", "--database-url", url, "--lookup", "customer"); err == nil {
		t.Error("keys add accepted a key with white space inside")
	}
	gen := cliMust(t, "", "keys", "add", "--database-url", url, "--all-lookups", "--generate")
	if !regexp.MustCompile(`key: [0-9a-f]{48}\n`).MatchString(gen) {
		t.Errorf("keys add --generate did not print a 48-hex-digit key once:\n%s", gen)
	}
}

func TestCLILookupsCheck(t *testing.T) {
	t.Parallel()
	url, pool := cliDemo(t, "bf7769e5321448de88838cdb")
	ctx := context.Background()
	out := cliMust(t, "", "lookups", "check", "--database-url", url)
	if !strings.Contains(out, "2 lookups ok") || !strings.Contains(out, `custinfo.phone_key("phone") = ANY(`) || strings.Contains(out, "warning") {
		t.Errorf("lookups check on the demo:\n%s", out)
	}
	if _, err := pool.Exec(ctx, `DROP INDEX demo.customers_phone_key_idx`); err != nil {
		t.Fatal(err)
	}
	out = cliMust(t, "", "lookups", "check", "--database-url", url, "customer")
	if !strings.Contains(out, "warning: param \"callNum\"") || !strings.Contains(out, "CREATE INDEX CONCURRENTLY") || !strings.Contains(out, "ON \"demo\".\"customers\" (custinfo.phone_key(\"phone\"))") {
		t.Errorf("lookups check without the phone index gives no index warning:\n%s", out)
	}
	// The statement-time checks would refuse the typo: switched off here to
	// test what check reports at load.
	if _, err := pool.Exec(ctx, `BEGIN; SET LOCAL custinfo.mapping_checks = off;
UPDATE custinfo.lookup_results SET source_column = 'full_name' WHERE lookup = 'customer' AND field = 'userName'; COMMIT`); err != nil {
		t.Fatal(err)
	}
	out, _, err := cliRun(t, "", "lookups", "check", "--database-url", url)
	var ee exitError
	if !errors.As(err, &ee) || ee != 1 {
		t.Errorf("lookups check on a broken mapping: err = %v, want exit status 1", err)
	}
	if !strings.Contains(out, `problem: result "userName": column "full_name" does not exist in "demo"."customers"`) || !strings.Contains(out, "1 of 2 lookups broken") {
		t.Errorf("lookups check on a broken mapping:\n%s", out)
	}
	list := cliMust(t, "", "lookups", "list", "--database-url", url)
	if !regexp.MustCompile(`customer\s+broken`).MatchString(list) || !regexp.MustCompile(`customer_card\s+ok`).MatchString(list) {
		t.Errorf("lookups list:\n%s", list)
	}
}

func TestCLILookupsTry(t *testing.T) {
	t.Parallel()
	url, pool := cliDemo(t, "bf7769e5321448de88838cdb")
	var phone, name, no string
	if err := pool.QueryRow(context.Background(), `SELECT phone, name, customer_no FROM demo.customers WHERE id = 7`).Scan(&phone, &name, &no); err != nil {
		t.Fatal(err)
	}
	out := cliMust(t, "", "lookups", "try", "--database-url", url, "customer", "callNum="+phone, "nation=82")
	for _, want := range []string{"sql: SELECT", "$1 = []string{", "plan:", "Index", "time:", `200 {"data":{"userName":"` + name + `","id":"` + no + `"}}`} {
		if !strings.Contains(out, want) {
			t.Errorf("lookups try output lacks %q:\n%s", want, out)
		}
	}
	// Exit codes: 0 matched, 1 nothing matched, 2 broken lookup or bad input.
	for _, tt := range []struct {
		name   string
		args   []string
		status int
		out    string
	}{
		{"no match", []string{"customer", "callNum=010-0000-0001"}, 1, `404 {"error":{"code":"no_data"`},
		{"missing field", []string{"customer", "nation=82"}, 2, `400 {"error":{"code":"missing_field"`},
		{"not field=value", []string{"customer", "callNum"}, 2, ""},
		{"unknown lookup", []string{"nope", "callNum=01012345678"}, 2, ""},
	} {
		out, _, err := cliRun(t, "", append([]string{"lookups", "try", "--database-url", url}, tt.args...)...)
		var ee exitError
		if !errors.As(err, &ee) || int(ee) != tt.status || !strings.Contains(out, tt.out) {
			t.Errorf("lookups try, %s: %v, want exit status %d\n%s", tt.name, err, tt.status, out)
		}
	}
	if _, err := pool.Exec(context.Background(), `BEGIN; SET LOCAL custinfo.mapping_checks = off;
UPDATE custinfo.lookup_results SET source_column = 'nope' WHERE lookup = 'customer_card'; COMMIT`); err != nil {
		t.Fatal(err)
	}
	out, _, err := cliRun(t, "", "lookups", "try", "--database-url", url, "customer_card", "callNum="+phone)
	var ee exitError
	if !errors.As(err, &ee) || ee != 2 || !strings.Contains(out, "lookup_misconfigured") {
		t.Errorf("lookups try on a broken lookup: %v, want exit status 2\n%s", err, out)
	}
}

// TestEndToEnd runs the real program: demo data, serve on port 0, and the
// sign subcommand as the helpdesk would call.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	const key = "bf7769e5321448de88838cdb"
	url, pool := cliDemo(t, key)
	var phone, name, no string
	if err := pool.QueryRow(context.Background(), `SELECT phone, name, customer_no FROM demo.customers WHERE id = 42`).Scan(&phone, &name, &no); err != nil {
		t.Fatal(err)
	}
	base := cliServe(t, url)
	lookupURL := base + "/v1/lookups/customer"

	out := cliMust(t, "", "sign", "--url", lookupURL, "--key", key, `{"callNum":"`+phone+`","nation":"82"}`)
	if want := "200 OK\n" + `{"data":{"userName":"` + name + `","id":"` + no + `"}}`; !strings.HasPrefix(out, want) {
		t.Errorf("sign = %q, want prefix %q", out, want)
	}
	out, _, err := cliRun(t, key, "sign", "--url", lookupURL, "--key-file", "-", "--scheme", "uri_body", `{"callNum":"`+phone+`"}`)
	if err != nil || !strings.HasPrefix(out, "200 OK") {
		t.Errorf("sign with uri_body and the key on stdin = %q, %v", out, err)
	}
	out, _, err = cliRun(t, "", "sign", "--url", lookupURL, "--key", key, "--offset", "-6m", `{"callNum":"`+phone+`"}`)
	if err == nil || !strings.HasPrefix(out, "400 Bad Request") || !strings.Contains(out, `"code":"invalid_timestamp"`) {
		t.Errorf("sign with a 6-minute-old timestamp = %q, %v", out, err)
	}

	// A body changed after signing: take the dry run's headers, send another body.
	dry := cliMust(t, "", "sign", "--url", lookupURL, "--key", key, "--dry-run", `{"callNum":"`+phone+`"}`)
	ts := regexp.MustCompile(`X-TC-Timestamp: (\d+)`).FindStringSubmatch(dry)
	auth := regexp.MustCompile(`Authorization: (\S+)`).FindStringSubmatch(dry)
	if ts == nil || auth == nil || !strings.Contains(dry, "curl -sS -X POST") {
		t.Fatalf("sign --dry-run output:\n%s", dry)
	}
	req, _ := http.NewRequest(http.MethodPost, lookupURL, strings.NewReader(`{"callNum":"010-0000-0000"}`))
	req.Header.Set("X-TC-Timestamp", ts[1])
	req.Header.Set("Authorization", auth[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"code":"access_denied"`) {
		t.Errorf("tampered body: %d %s, want 403 access_denied", resp.StatusCode, body)
	}
}

// cliServe runs serve on a free loopback port until the test ends and returns
// its base URL.
func cliServe(t *testing.T, dbURL string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	f := serveFlags{
		databaseURL:     dbURL,
		addr:            "127.0.0.1:0",
		queryTimeout:    2 * time.Second,
		timestampWindow: 5 * time.Minute,
		maxBody:         64 << 10,
		reloadInterval:  time.Minute,
		shutdownTimeout: 5 * time.Second,
	}
	go func() { done <- serve(ctx, f, slog.New(slog.DiscardHandler), func(addr string) { addrCh <- addr }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case addr := <-addrCh:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("serve ended before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen within 30 s")
	}
	return ""
}

func TestCLIKeysAddRefusesWeakKeys(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	url := pool.Config().ConnString()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE people (id int PRIMARY KEY, name text); INSERT INTO custinfo.lookups (name, source) VALUES ('names', 'people')`); err != nil {
		t.Fatal(err)
	}
	for _, weak := range []string{"abc123", "0123456789abcde", "aaaaaaaaaaaaaaaaaaaaaaaa", "가나다라마바사아자차카타파하가"} {
		stdout, stderr, err := cliRun(t, weak+"\n", "keys", "add", "--database-url", url, "--lookup", "names")
		if err == nil || !strings.Contains(err.Error(), "too weak") {
			t.Errorf("keys add with %d-byte weak key: %v, want a too-weak error", len(weak), err)
		}
		if all := fmt.Sprint(stdout, stderr, err); strings.Contains(all, weak) {
			t.Errorf("keys add echoed the weak key: %s", all)
		}
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM custinfo.api_keys`).Scan(&n); err != nil || n != 0 {
		t.Errorf("keys stored after weak adds = %d (%v), want 0", n, err)
	}
	if _, _, err := cliRun(t, "", "keys", "add", "--database-url", url, "--lookup", "names", "--allow-weak"); err == nil {
		t.Errorf("keys add accepted --allow-weak")
	}
	if out := cliMust(t, "", "keys", "add", "--database-url", url, "--lookup", "names", "--generate"); !strings.Contains(out, "added key") {
		t.Errorf("keys add --generate: %s", out)
	}
}
