package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// promRules is the part of a Prometheus rule file the checks read.
type promRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

const (
	rulesFile     = "../../deploy/prometheus/rules.yml"
	rulesTestFile = "../../deploy/prometheus/rules_test.yml"
	promConfig    = "../../deploy/prometheus/prometheus.yml"
)

func loadRules(t *testing.T) promRules {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var r promRules
	if err := yaml.Unmarshal(raw, &r); err != nil {
		t.Fatalf("parse %s: %v", rulesFile, err)
	}
	return r
}

// promtool returns the path of promtool, skipping the test when it is not
// installed.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (.ci/run installs Debian's prometheus package, which has it)")
	}
	return p
}

// TestPrometheusRules runs promtool over the shipped configuration: the
// scrape config and rule files are valid, and rules_test.yml passes.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "config", promConfig},
		{"check", "rules", rulesFile},
		{"test", "rules", rulesTestFile},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// readmeAnchors returns the anchors GitHub gives README.md's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
	}
	return anchors
}

// TestAlertRunbooks checks that every alert says how bad it is and links to
// a README heading that exists, so the person paged lands on its runbook.
func TestAlertRunbooks(t *testing.T) {
	t.Parallel()
	anchors := readmeAnchors(t)
	alerts := 0
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "page" && s != "warning" {
				t.Errorf("alert %s has severity %q, want page or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			u := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(u, "README.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q, want README.md#<a heading of README.md>", r.Alert, u)
			}
		}
	}
	if alerts < 9 {
		t.Errorf("%s has %d alerts, want at least 9", rulesFile, alerts)
	}
}

const dashboardFile = "../../deploy/grafana/dashboards/custinfo.json"

// PromQL pieces that name no metric: string literals, label matchers, range
// and subquery durations, and the label lists of grouping clauses.
var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValues  = regexp.MustCompile(`^\s*label_values\(\s*(.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// promqlMetricNames returns the metric names a PromQL expression (or a
// Grafana label_values query) reads.
func promqlMetricNames(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent of a number: 1e3
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if promKeywords[strings.ToLower(name)] || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
	}
	return names
}

func TestPromqlMetricNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want []string
	}{
		{`up{job="custinfo"} == 0`, []string{"up"}},
		{`sum by (job, instance) (rate(a_total{code=~"x|y"}[5m])) / sum by (job, instance) (rate(a_total[5m]))`, []string{"a_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{lookup=~"$lookup"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`(c_seconds - time()) / 86400 < 14 * 1e3`, []string{"c_seconds"}},
		{`increase(x_total{result="error"}[10m]) > 0 unless on (job, instance) increase(y_total[10m]) > 0`, []string{"x_total", "y_total"}},
		{`count by (job) (r == 0) == count by (job) (r) and s offset 5m`, []string{"r", "s"}},
		{`custinfo:ratio_rate5m > 0.05`, []string{"custinfo:ratio_rate5m"}},
		{`label_values(up{job="custinfo"}, instance)`, []string{"up"}},
		{`label_values(m_total{instance=~"$instance"}, lookup)`, []string{"m_total"}},
		{`sum without (le) (rate(q{a="}{"}[1m]))`, []string{"q"}},
	}
	for _, tt := range tests {
		if got := promqlMetricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// dashboardQueries returns every PromQL query of the dashboard: panel
// targets and template variables.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	var queries []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "expr" || key == "definition" {
				queries = append(queries, v)
			}
		}
	}
	walk(dash, "")
	return queries
}

// optionalMetrics are read by the dashboard or the rules but may be missing
// from the first scrape of a fresh server.
var optionalMetrics = map[string]string{
	// TestTwoInstances checks it in the scrape.
	"custinfo_access_log_partitions_ensured": "exposed once serve's first attempt to create the access log's partitions ended (--access-log-partition-days, 7 unless 0)",
}

// TestDashboardMetricsInScrape runs serve with TLS, coalescing, a replica
// and a metrics listener, sends it a signed 200, a 404 and a 403, and checks that
// every metric the dashboard and the alert rules read is in its /metrics,
// so neither can drift from the code; and that promtool finds the scrape
// clean.
func TestDashboardMetricsInScrape(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert := writeCert(t, dir, 7)
	dbURL := opsSeed(t)
	s := opsStart(t, serveFlags{
		databaseURL: dbURL,
		metricsAddr: "127.0.0.1:0",
		tlsCert:     filepath.Join(dir, "cert.pem"),
		tlsKey:      filepath.Join(dir, "key.pem"),
		coalesce:    true,
		// The primary named as a replica as well, so that the replica
		// metrics the dashboard and the rules read are exposed.
		replicaURLs: urlList{urls: []string{dbURL}},
	})
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	for _, tt := range []struct {
		name, key, body string
		want            int
	}{
		{"signed, found", opsKey, `{"callNum":"` + opsPhone + `","nation":"82"}`, 200},
		{"signed, not found", opsKey, `{"callNum":"010-5555-0000","nation":"82"}`, 404},
		{"wrong key", "not-the-key-of-this-server", `{"callNum":"` + opsPhone + `"}`, 403},
	} {
		if status, body := opsDo(t, client, opsLookup(t, s.base, "customer", tt.key, tt.body, "")); status != tt.want {
			t.Fatalf("%s: status %d (%s), want %d", tt.name, status, body, tt.want)
		}
	}
	status, scrape := opsGet(t, opsClient, s.metricsBase+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics = %d", status)
	}
	exposed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(scrape))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exposed[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	for _, series := range []string{
		`custinfo_requests_total{code="ok",lookup="customer"} 1`,
		`custinfo_requests_total{code="no_data",lookup="customer"} 1`,
		`custinfo_requests_total{code="access_denied",lookup="_unknown"} 1`,
		`custinfo_ready 1`,
	} {
		if !strings.Contains(scrape, series+"\n") {
			t.Errorf("/metrics has no %s after the test's traffic", series)
		}
	}

	recorded := map[string]bool{}
	type use struct{ where, expr string }
	var uses []use
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			uses = append(uses, use{fmt.Sprintf("rule %s%s", r.Record, r.Alert), r.Expr})
		}
	}
	queries := dashboardQueries(t)
	if len(queries) < 15 {
		t.Fatalf("found %d queries in %s, want the panels' and variables' (at least 15)", len(queries), dashboardFile)
	}
	for _, q := range queries {
		uses = append(uses, use{"dashboard", q})
	}
	checked := 0
	for _, u := range uses {
		names := promqlMetricNames(u.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric name found in %q", u.where, u.expr)
		}
		for _, name := range names {
			checked++
			switch {
			case exposed[name]:
			case name == "up":
				// Prometheus's own, for every target it scrapes.
			case strings.Contains(name, ":"):
				if !recorded[name] {
					t.Errorf("%s reads %s, which no rule of %s records", u.where, name, rulesFile)
				}
			case optionalMetrics[name] != "":
				t.Logf("%s reads %s, not in this scrape: %s", u.where, name, optionalMetrics[name])
			default:
				t.Errorf("%s reads %s, which /metrics does not expose (query %q)", u.where, name, u.expr)
			}
		}
	}
	t.Logf("checked %d metric references of %d queries and rules against %d exposed names", checked, len(uses), len(exposed))

	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed; the scrape was not linted (.ci/run installs it)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the scrape: %v\n%s", err, out)
	}
}

// TestDashboardQueriesParse has promtool parse each panel query of the
// dashboard, written as a recording rule with Grafana's variables filled in.
func TestDashboardQueriesParse(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	vars := regexp.MustCompile(`\$[a-zA-Z_]+`)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, q := range dashboardQueries(t) {
		if labelValues.MatchString(q) {
			continue // a template variable's query, not PromQL
		}
		q = vars.ReplaceAllString(strings.ReplaceAll(q, "$__rate_interval", "5m"), ".*")
		expr, err := json.Marshal(q) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", n, expr)
		n++
	}
	file := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
}
