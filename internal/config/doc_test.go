package config

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The deployment files and the docs agree with the code: every variable
// docker-compose.yml and .env.example set is one authd reads, and every
// variable authd reads is in README's configuration table and in
// .env.example.

var (
	// e.get("X"), e.set("X"), Getenv("X"): a variable read outside the table.
	envReadRe = regexp.MustCompile(`(?:\be\.(?:get|set)|Getenv|LookupEnv)\("([A-Z][A-Z0-9_]+)"`)
	varNameRe = regexp.MustCompile("`([A-Z][A-Z0-9_]{2,})`")
	envLineRe = regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]+)=`)
)

// variablesRead are the variables authd reads: the table's, and any read
// by name anywhere in its non-test sources (which must be the table's
// too).
func variablesRead(t *testing.T) []string {
	t.Helper()
	out := Names()
	seen := map[string]bool{}
	for _, n := range out {
		seen[n] = true
	}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		// internal/testenv is the tests' own: it reads where the tests'
		// databases are, not authd's configuration.
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "internal/testenv") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range envReadRe.FindAllStringSubmatch(string(b), -1) {
			if !seen[m[1]] {
				t.Errorf("%s reads %s, which is not in the settings table", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 30 || !slices.Contains(out, "SECRET_KEY") || !slices.Contains(out, "LIMIT_SEND_CODE_PER_IP") {
		t.Fatalf("the table holds too little: %v", out)
	}
	return out
}

// readmeVariables are the names in the first cell of README's tables.
func readmeVariables(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range varNameRe.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	return out
}

// envExampleVariables are the names .env.example sets or shows commented.
func envExampleVariables(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := envLineRe.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

// composeVariables are the keys of every service's environment in
// docker-compose.yml (map form, as the file is written).
func composeVariables(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Environment map[string]string `json:"environment"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v (environment must be a map)", err)
	}
	out := map[string]bool{}
	for _, svc := range c.Services {
		for k := range svc.Environment {
			out[k] = true
		}
	}
	if len(out) < 10 {
		t.Fatalf("docker-compose.yml: found only %v", out)
	}
	return out
}

func TestEveryVariableDocumented(t *testing.T) {
	read := variablesRead(t)
	readSet := map[string]bool{}
	for _, v := range read {
		readSet[v] = true
	}
	readme, example := readmeVariables(t), envExampleVariables(t)
	for _, v := range read {
		if !readme[v] {
			t.Errorf("%s is read by authd but not in README's configuration table", v)
		}
		if !example[v] {
			t.Errorf("%s is read by authd but not in .env.example", v)
		}
	}
	for v := range example {
		if !readSet[v] {
			t.Errorf(".env.example sets %s, which authd does not read", v)
		}
	}
	for v := range composeVariables(t) {
		if !readSet[v] {
			t.Errorf("docker-compose.yml sets %s, which authd does not read", v)
		}
	}
}

// The README's configuration table is the settings table's: made from it,
// it cannot drift from the defaults the code applies.
func TestReadmeConfigTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "| variable | default | range | meaning |\n")
	if i < 0 {
		t.Fatal("README.md has no configuration table (| variable | default | range | meaning |)")
	}
	table := readme[i:]
	if j := strings.Index(table, "\n\n"); j >= 0 {
		table = table[:j+1]
	}
	if want := Markdown(); table != want {
		t.Errorf("README.md's configuration table is not the settings table's; replace it with:\n\n%s", want)
	}
}
