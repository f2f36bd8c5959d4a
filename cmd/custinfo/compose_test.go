package main

import (
	"fmt"
	"net/url"
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

// composeService is the part of a docker-compose.yml service the rules read.
type composeService struct {
	Image           string            `yaml:"image"`
	Build           any               `yaml:"build"`
	PullPolicy      string            `yaml:"pull_policy"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Restart         string            `yaml:"restart"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Profiles        []string          `yaml:"profiles"`
	Volumes         []string          `yaml:"volumes"`
	Healthcheck     struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// composeVar matches a variable with a default, ${NAME:-default}.
var composeVar = regexp.MustCompile(`\$\{[A-Z0-9_]+:-([^}]*)\}`)

// composeDefault replaces each ${NAME:-default} in s by its default, as a
// fresh machine without those variables set sees it.
func composeDefault(s string) string { return composeVar.ReplaceAllString(s, "$1") }

// composeServices reads the services of the project's docker-compose.yml.
func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	return file.Services
}

// TestComposeFile checks the rules docker-compose.yml keeps in every profile,
// so that a first `docker compose up` on a fresh machine works: they were
// each found broken once (see the comment at the top of the file).
func TestComposeFile(t *testing.T) {
	services := composeServices(t)
	if len(services) < 4 {
		t.Fatalf("docker-compose.yml has %d services, want at least postgres, migrate, demo and server", len(services))
	}
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	slices.Sort(names)

	// One-shot services are those another one waits for to complete.
	oneShot := map[string]bool{}
	superusers := map[string]bool{}
	for _, s := range services {
		for dep, d := range s.DependsOn {
			if d.Condition == "service_completed_successfully" {
				oneShot[dep] = true
			}
			if _, ok := services[dep]; !ok {
				t.Errorf("a service depends on %q, which does not exist", dep)
			}
		}
		if u := s.Environment["POSTGRES_USER"]; u != "" {
			superusers[composeDefault(u)] = true
		}
	}
	if len(superusers) == 0 {
		t.Errorf("no service sets POSTGRES_USER; the rule on serve's role cannot be checked")
	}

	var builders []string
	for _, name := range names {
		s := services[name]
		custinfo := s.Image == "custinfo:local"
		if s.Build != nil {
			builders = append(builders, name)
			if !custinfo {
				t.Errorf("service %s builds an image tagged %q, want custinfo:local", name, s.Image)
			}
		} else if custinfo && s.PullPolicy != "never" {
			t.Errorf("service %s runs custinfo:local with pull_policy %q, want never (the tag is built here, not in a registry)", name, s.PullPolicy)
		}

		for _, test := range s.Healthcheck.Test {
			if strings.Contains(test, "pg_isready") && !regexp.MustCompile(`(^|\s)-h\s*\S`).MatchString(test) {
				t.Errorf("service %s checks health with %q: without -h, pg_isready asks the Unix socket, which the setup server answers before TCP works", name, test)
			}
		}

		switch {
		case oneShot[name]:
			if s.Restart != "" && s.Restart != "no" {
				t.Errorf("one-shot service %s has restart %q, want \"no\"", name, s.Restart)
			}
		case !slices.Contains([]string{"always", "unless-stopped", "on-failure"}, s.Restart):
			t.Errorf("long-running service %s has restart %q, want always, unless-stopped or on-failure", name, s.Restart)
		}

		// A bind mount of a file that is not in the checkout makes Docker
		// create an empty directory in its place, and the service fails.
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("service %s mounts %s, which is not in the checkout: %v", name, src, err)
				}
			}
		}

		for _, p := range s.Ports {
			if !strings.HasPrefix(composeDefault(p), "127.0.0.1:") {
				t.Errorf("service %s publishes %q, want it bound to 127.0.0.1 by default", name, p)
			}
		}

		if !custinfo {
			continue
		}
		serve := len(s.Command) > 0 && s.Command[0] == "serve"
		if !serve {
			if w, err := time.ParseDuration(s.Environment["CUSTINFO_CONNECT_WAIT"]); err != nil || w <= 0 {
				t.Errorf("one-shot custinfo service %s has CUSTINFO_CONNECT_WAIT %q, want a positive duration so it outlives a starting database", name, s.Environment["CUSTINFO_CONNECT_WAIT"])
			}
			continue
		}
		shutdown, err := time.ParseDuration(s.Environment["CUSTINFO_SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Errorf("serve service %s: CUSTINFO_SHUTDOWN_TIMEOUT %q: want it set, so the grace period can be compared with it", name, s.Environment["CUSTINFO_SHUTDOWN_TIMEOUT"])
		}
		var drain time.Duration
		if v, ok := s.Environment["CUSTINFO_DRAIN_DELAY"]; ok {
			if drain, err = time.ParseDuration(v); err != nil {
				t.Errorf("serve service %s: CUSTINFO_DRAIN_DELAY %q: %v", name, v, err)
			}
		}
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil || grace <= shutdown+drain {
			t.Errorf("serve service %s: stop_grace_period %q, want more than its drain delay + shutdown timeout (%v), or Docker kills it while it flushes the access log", name, s.StopGracePeriod, shutdown+drain)
		}
		dbURL := composeDefault(s.Environment["DATABASE_URL"])
		u, err := url.Parse(dbURL)
		if err != nil || u.User == nil {
			t.Errorf("serve service %s: DATABASE_URL %q names no user", name, dbURL)
		} else if superusers[u.User.Username()] {
			t.Errorf("serve service %s connects as %q, the database's superuser; want the role of db/roles/serve_role.sql", name, u.User.Username())
		}
	}
	if len(builders) != 1 {
		t.Errorf("services that build an image: %v, want exactly one (several builds of one tag race each other)", builders)
	}
}

// TestComposeHAProxy checks deploy/haproxy/haproxy.cfg with HAProxy itself,
// and that it balances over exactly the instances the scale profile runs.
func TestComposeHAProxy(t *testing.T) {
	const cfg = "../../deploy/haproxy/haproxy.cfg"
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "server" {
			servers = append(servers, strings.Split(f[2], ":")[0])
		}
	}
	var instances []string
	for name, s := range composeServices(t) {
		if slices.Contains(s.Profiles, "scale") && len(s.Command) > 0 && s.Command[0] == "serve" {
			instances = append(instances, name)
		}
	}
	slices.Sort(servers)
	slices.Sort(instances)
	if len(instances) < 2 || !slices.Equal(servers, instances) {
		t.Errorf("haproxy.cfg balances over %v, the scale profile runs serve as %v; want the same two or more", servers, instances)
	}

	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			t.Skip("haproxy is not installed (.ci/run installs it)")
		}
		haproxy = "/usr/sbin/haproxy"
	}
	out, err := exec.Command(haproxy, "-c", "-f", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}
}

// TestComposeObservability checks the observability profile against the
// files it mounts: Prometheus scrapes the --metrics-addr of exactly the
// serve instances of the other profiles and loads the rules, and Grafana is
// provisioned with the dashboard and that Prometheus, for anonymous viewers.
func TestComposeObservability(t *testing.T) {
	t.Parallel()
	services := composeServices(t)
	prom, okProm := services["prometheus"]
	graf, okGraf := services["grafana"]
	if !okProm || !okGraf {
		t.Fatalf("docker-compose.yml has no prometheus or grafana service")
	}
	for name, s := range map[string]composeService{"prometheus": prom, "grafana": graf} {
		if !slices.Equal(s.Profiles, []string{"observability"}) {
			t.Errorf("service %s has profiles %v, want [observability]", name, s.Profiles)
		}
		if len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no healthcheck", name)
		}
	}
	if want := "prom/prometheus:v3.5.0"; prom.Image != want {
		t.Errorf("prometheus image %q, want %q", prom.Image, want)
	}
	if want := "grafana/grafana:11.6.0"; graf.Image != want {
		t.Errorf("grafana image %q, want %q", graf.Image, want)
	}

	// mountTarget returns where service s mounts the checkout's src.
	mountTarget := func(name string, s composeService, src string) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.TrimSuffix(parts[0], "/") == src {
				return parts[1]
			}
		}
		t.Errorf("service %s does not mount %s", name, src)
		return ""
	}
	promDir := mountTarget("prometheus", prom, "./deploy/prometheus")
	if want := "--config.file=" + promDir + "/prometheus.yml"; promDir != "" && !slices.Contains(prom.Command, want) {
		t.Errorf("prometheus command %q, want %q", prom.Command, want)
	}

	// Each serve instance's metrics address, as a scrape target.
	wantStatic, wantDNS := []string{}, []string{}
	for name, s := range services {
		if len(s.Command) == 0 || s.Command[0] != "serve" {
			continue
		}
		i := slices.Index(s.Command, "--metrics-addr")
		if i < 0 || i+1 >= len(s.Command) {
			t.Errorf("serve service %s has no --metrics-addr: Prometheus cannot scrape it (/metrics is served only there)", name)
			continue
		}
		_, port, _ := strings.Cut(s.Command[i+1], ":")
		if len(s.Profiles) == 0 {
			wantStatic = append(wantStatic, name+":"+port)
		} else {
			wantDNS = append(wantDNS, name+":"+port)
		}
	}
	praw, err := os.ReadFile(promConfig)
	if err != nil {
		t.Fatal(err)
	}
	var pcfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(praw, &pcfg); err != nil {
		t.Fatalf("parse %s: %v", promConfig, err)
	}
	if !slices.Contains(pcfg.RuleFiles, "rules.yml") {
		t.Errorf("%s loads rule files %v, want rules.yml", promConfig, pcfg.RuleFiles)
	}
	gotStatic, gotDNS := []string{}, []string{}
	for _, sc := range pcfg.ScrapeConfigs {
		if sc.JobName != "custinfo" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			gotStatic = append(gotStatic, st.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				gotDNS = append(gotDNS, fmt.Sprintf("%s:%d", n, d.Port))
			}
		}
	}
	for _, l := range [][]string{wantStatic, wantDNS, gotStatic, gotDNS} {
		slices.Sort(l)
	}
	if !slices.Equal(gotStatic, wantStatic) || !slices.Equal(gotDNS, wantDNS) {
		t.Errorf("job custinfo scrapes %v and, while they run, %v; the serve services' --metrics-addr are %v (default profile) and %v (other profiles)",
			gotStatic, gotDNS, wantStatic, wantDNS)
	}

	// Grafana: anonymous viewers, the data source on the prometheus
	// service, the dashboard directory where the provider reads it.
	for k, want := range map[string]string{"GF_AUTH_ANONYMOUS_ENABLED": "true", "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer"} {
		if got := graf.Environment[k]; got != want {
			t.Errorf("grafana %s = %q, want %q", k, got, want)
		}
	}
	if mountTarget("grafana", graf, "./deploy/grafana/provisioning") != "/etc/grafana/provisioning" {
		t.Errorf("grafana does not mount its provisioning at /etc/grafana/provisioning, where Grafana reads it")
	}
	dashDir := mountTarget("grafana", graf, "./deploy/grafana/dashboards")
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "../../deploy/grafana/provisioning/dashboards/custinfo.yml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != dashDir {
		t.Errorf("dashboard provider reads %+v, want the one path %s where grafana mounts the dashboards", prov.Providers, dashDir)
	}
	if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != dashDir+"/custinfo.json" {
		t.Errorf("grafana home dashboard %q, want %s/custinfo.json", home, dashDir)
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "../../deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" || ds.Datasources[0].Type != "prometheus" {
		t.Errorf("data sources %+v, want one prometheus at http://prometheus:9090", ds.Datasources)
	} else if dash, err := os.ReadFile(dashboardFile); err != nil {
		t.Error(err)
	} else if uid := ds.Datasources[0].UID; uid == "" || !strings.Contains(string(dash), `"uid": "`+uid+`"`) {
		t.Errorf("the dashboard does not refer to the provisioned data source by its uid %q", uid)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}
