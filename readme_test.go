package authd_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/testenv"
)

// readmeExample returns the fenced block that follows
// "<!-- example: name -->" in README.md.
func readmeExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- example: " + name + " -->\n```[a-z]*\n(.*?)```")
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("README.md has no %s example", name)
	}
	return string(m[1])
}

const readmeSecret = "readme-secret-key-0123456789abcdef0123"

// readmeProofs are proofs the examples must accept (fresh, signed) and
// reject (tampered, stale, signed with another key).
func readmeProofs() (good, bad []authd.Proof) {
	h := proof.NewHMAC(readmeSecret)
	now := time.Now().Unix()
	for _, email := range []string{"ana@example.com", "zoë@exämple.com", "o'brien+tag@example.com", "a&b/c@xn--80ak6aa92e.com", "x@𝄞.example"} {
		good = append(good, h.Sign(authd.Proof{AuthUserID: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Email: email, ProjectID: "shop", Verified: true, IssuedAt: now}))
	}
	p := good[0]
	tampered := p
	tampered.Email = "eve@example.com"
	stale := h.Sign(authd.Proof{AuthUserID: p.AuthUserID, Email: p.Email, ProjectID: "shop", Verified: true, IssuedAt: now - 3600})
	other := proof.NewHMAC("another-secret-key-0123456789abcdef").Sign(p)
	// Genuine, but for another project: a consumer that does not compare
	// project_id would take a proof made for someone else's app.
	bank := h.Sign(authd.Proof{AuthUserID: p.AuthUserID, Email: p.Email, ProjectID: "bank", Verified: true, IssuedAt: now})
	return good, []authd.Proof{tampered, stale, other, bank}
}

// The README's Python example verifies authd's proofs as the original's
// consumers do.
func TestReadmePythonExample(t *testing.T) {
	py := testenv.LookPath(t, "python3")
	code := readmeExample(t, "python") + `
import sys
for line in sys.stdin:
    print(verify_proof(json.loads(line), sys.argv[1], "shop"))
`
	good, bad := readmeProofs()
	var in strings.Builder
	for _, p := range append(good, bad...) {
		b, _ := json.Marshal(p)
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd := exec.Command(py, "-c", code, readmeSecret)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	checkVerdicts(t, string(out), len(good), len(bad))
}

// The README's Go example compiles on its own (standard library only) and
// agrees with authd.
func TestReadmeGoExample(t *testing.T) {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = testenv.LookPath(t, "go")
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/consumer\n\ngo 1.22\n")
	write("proofcheck/proofcheck.go", readmeExample(t, "go"))
	write("main.go", `package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"example.com/consumer/proofcheck"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var p proofcheck.Proof
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			panic(err)
		}
		if proofcheck.Verify(p, os.Args[1], "shop", 15*time.Minute) {
			fmt.Println("True")
		} else {
			fmt.Println("False")
		}
	}
}
`)
	good, bad := readmeProofs()
	var in strings.Builder
	for _, p := range append(good, bad...) {
		b, _ := json.Marshal(p)
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd := exec.Command(gobin, "run", ".", readmeSecret)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOPROXY=off")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	checkVerdicts(t, string(out), len(good), len(bad))
}

func checkVerdicts(t *testing.T, out string, good, bad int) {
	t.Helper()
	lines := strings.Fields(out)
	if len(lines) != good+bad {
		t.Fatalf("got %d verdicts, want %d:\n%s", len(lines), good+bad, out)
	}
	for i, v := range lines {
		want := "True"
		if i >= good {
			want = "False"
		}
		if v != want {
			t.Errorf("proof %d: %s, want %s", i, v, want)
		}
	}
}
