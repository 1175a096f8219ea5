package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The deployment files say what the code does (the variables they set are
// checked against the settings table in internal/config).

// The Dockerfile's promises, read from the file: no Docker engine runs
// here (TestStaticBuildRunsAsNonRoot runs what the image would).
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"CGO_ENABLED=0", "FROM gcr.io/distroless/static", "\nUSER 65532:65532\n", "\nEXPOSE 8013\n",
		`HEALTHCHECK`, `CMD ["/authd", "healthcheck"]`, "./cmd/authd",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// Metrics on a port of their own, not published by the image.
	if !strings.Contains(df, "METRICS_ADDR=0.0.0.0:9464") || strings.Contains(df, "EXPOSE 9464") {
		t.Error("Dockerfile: want METRICS_ADDR=0.0.0.0:9464 and no EXPOSE of it")
	}
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a build stage and a final one", n)
	}
	c, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	compose := string(c)
	for _, want := range []string{
		"image: postgres:15-alpine", "image: redis:7-alpine", "--appendonly", "mailpit",
		"condition: service_healthy", `"127.0.0.1:8013:8013"`, `["CMD", "/authd", "healthcheck"]`,
	} {
		if !strings.Contains(compose, want) {
			t.Errorf("docker-compose.yml lacks %q", want)
		}
	}
	if strings.Count(compose, "healthcheck:") < 4 {
		t.Error("docker-compose.yml: want a healthcheck on each of the 4 services")
	}
	ign, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".env", ".git", "data/"} {
		if !strings.Contains(string(ign), want) {
			t.Errorf(".dockerignore lacks %q", want)
		}
	}
}

// docker-compose.yml parsed as YAML: the structure the Docker engine would
// act on (no engine runs here).
func TestComposeStructure(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string            `json:"image"`
			Build       any               `json:"build"`
			Ports       []string          `json:"ports"`
			Command     []string          `json:"command"`
			Environment map[string]string `json:"environment"`
			DependsOn   map[string]struct {
				Condition string `json:"condition"`
			} `json:"depends_on"`
			Healthcheck struct {
				Test []string `json:"test"`
			} `json:"healthcheck"`
		} `json:"services"`
	}
	// Compose refuses a key given twice; so does this test.
	if _, err := yaml.YAMLToJSONStrict(b); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	// Keys this test does not read (restart, volumes...) are allowed.
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	want := map[string]string{"postgres": "postgres:15-alpine", "redis": "redis:7-alpine"}
	for name, image := range want {
		if c.Services[name].Image != image {
			t.Errorf("%s: image %q, want %q", name, c.Services[name].Image, image)
		}
	}
	if !strings.Contains(c.Services["mailpit"].Image, "mailpit") {
		t.Errorf("no mailpit service: %+v", c.Services["mailpit"])
	}
	if !slices.Contains(c.Services["redis"].Command, "--appendonly") || !slices.Contains(c.Services["redis"].Command, "noeviction") {
		t.Errorf("redis command %v: want appendonly and noeviction", c.Services["redis"].Command)
	}
	a := c.Services["authd"]
	if a.Environment["METRICS_ADDR"] != "0.0.0.0:9464" {
		t.Errorf("authd METRICS_ADDR %q, want 0.0.0.0:9464 (in the compose network, not published)", a.Environment["METRICS_ADDR"])
	}
	if a.Build == nil || !slices.Equal(a.Ports, []string{"127.0.0.1:8013:8013"}) {
		t.Errorf("authd: build %v, ports %v", a.Build, a.Ports)
	}
	for _, dep := range []string{"postgres", "redis", "mailpit"} {
		if a.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("authd depends_on %s: %q, want service_healthy", dep, a.DependsOn[dep].Condition)
		}
	}
	for name, s := range c.Services {
		if len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	if !slices.Equal(a.Healthcheck.Test, []string{"CMD", "/authd", "healthcheck"}) {
		t.Errorf("authd healthcheck %v", a.Healthcheck.Test)
	}
	// The compose network names the other services: authd reaches them
	// by those names.
	if a.Environment["POSTGRES_SERVER"] != "postgres" || a.Environment["REDIS_HOST"] != "redis" || !strings.Contains(a.Environment["SMTP_HOST"], "mailpit") {
		t.Errorf("authd environment does not point at the services: %v", a.Environment)
	}
}
