package main

import (
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

// TestComposeFile checks the rules docker-compose.yml keeps in every profile,
// so that a first `docker compose up` on a fresh machine works: they were
// each found broken once (see the comment at the top of the file).
func TestComposeFile(t *testing.T) {
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
	services := file.Services
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
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(compose, &file); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}
	var instances []string
	for name, s := range file.Services {
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
