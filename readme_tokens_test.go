package authd_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/jwstest"
	"github.com/authd/authd/internal/jwt"
	"github.com/authd/authd/internal/testenv"
)

// readmeIssuer is the URL the README's examples name; the tests put their
// JWKS server's in its place.
const readmeIssuer = "https://auth.example.com"

// readmeTokens serves a JWKS on a local server (standing in for authd, its
// URL the issuer) and returns tokens the examples must accept and reject:
// genuine; expired, for another project, from another issuer, tampered,
// unsigned (alg none), of an unknown kid, HS256 keyed with the public key.
func readmeTokens(t *testing.T) (issuer string, good, bad []string) {
	t.Helper()
	dir := t.TempDir()
	keyPEM := func(name string) string {
		b, err := jwt.GenerateKeyPEM(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	ours, theirs := keyPEM("ours.pem"), keyPEM("theirs.pem")
	var set *jwt.Set
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(set.JWKS())
	}))
	t.Cleanup(srv.Close)
	issuer = srv.URL
	newSet := func(path, iss string, now time.Time) *jwt.Set {
		s, err := jwt.New(t.Context(), jwt.FileSource{Path: path}, jwt.Options{Issuer: iss, TTL: 15 * time.Minute, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	set = newSet(ours, issuer, now)
	issue := func(s *jwt.Set, aud string, at time.Time) string {
		tok, err := s.IssueToken(t.Context(), authd.TokenClaims{Subject: "3f1c2b9e-8a7d-4c6e-9b1a-2d3e4f5a6b7c", Audience: aud, Email: "zoë@exämple.com", IssuedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Raw
	}
	genuine := issue(set, "shop", now)
	header, claims, _ := jwstest.Parse(genuine)
	pub, err := jwstest.JWKSKey(set.JWKS(), header["kid"].(string))
	if err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "00000000-0000-4000-8000-000000000000"
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	bad = []string{
		issue(set, "shop", now.Add(-time.Hour)),
		issue(set, "another-project", now),
		issue(newSet(ours, "https://evil.example", now), "shop", now),
		jwstest.Tamper(genuine, claims),
		jwstest.None(map[string]any{"kid": header["kid"], "typ": "JWT"}, claims),
		issue(newSet(theirs, issuer, now), "shop", now),
		jwstest.EdDSA(map[string]any{"kid": "not-published"}, claims, otherPriv),
		jwstest.HS256(map[string]any{"kid": header["kid"], "typ": "JWT"}, claims, pub),
	}
	return issuer, []string{genuine, issue(set, "shop", now.Add(-time.Minute))}, bad
}

// The README's Go example, with authd's verify package, accepts genuine
// tokens and v1 proofs and refuses the rest. It is built as a consumer
// would build it: its own module requiring this one.
func TestReadmeGoVerifyExample(t *testing.T) {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = testenv.LookPath(t, "go")
	}
	issuer, good, bad := readmeTokens(t)
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gomod, _ := os.ReadFile("go.mod")
	goLine := "go 1.26"
	for _, l := range strings.Split(string(gomod), "\n") {
		if strings.HasPrefix(l, "go ") {
			goLine = l
		}
	}
	write("go.mod", "module example.com/consumer\n\n"+goLine+"\n\nrequire github.com/authd/authd v0.0.0\n\nreplace github.com/authd/authd => "+root+"\n")
	// The consumer's checksums: authd's own cover every module it needs.
	sum, _ := os.ReadFile("go.sum")
	write("go.sum", string(sum))
	write("authcheck/authcheck.go", strings.ReplaceAll(readmeExample(t, "go-verify"), readmeIssuer, issuer))
	write("main.go", `package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/authd/authd"

	"example.com/consumer/authcheck"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		kind, arg, _ := strings.Cut(sc.Text(), " ")
		var err error
		if kind == "token" {
			_, err = authcheck.User(context.Background(), arg)
		} else {
			var p authd.Proof
			if err := json.Unmarshal([]byte(arg), &p); err != nil {
				panic(err)
			}
			err = authcheck.Proof(p, os.Args[1])
		}
		if err == nil {
			fmt.Println("True")
		} else {
			fmt.Println("False")
		}
	}
}
`)
	var in strings.Builder
	goodProofs, badProofs := readmeProofs()
	for _, tok := range good {
		fmt.Fprintf(&in, "token %s\n", tok)
	}
	for _, p := range goodProofs {
		b, _ := json.Marshal(p)
		fmt.Fprintf(&in, "proof %s\n", b)
	}
	for _, tok := range bad {
		fmt.Fprintf(&in, "token %s\n", tok)
	}
	for _, p := range badProofs {
		b, _ := json.Marshal(p)
		fmt.Fprintf(&in, "proof %s\n", b)
	}
	cmd := exec.Command(gobin, "run", ".", readmeSecret)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOPROXY=off")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	checkVerdicts(t, string(out), len(good)+len(goodProofs), len(bad)+len(badProofs))
}

// The README's Node example, with the jose package against the JWKS,
// accepts genuine tokens and refuses the rest: an independent JOSE
// implementation agreeing with authd's signer.
func TestReadmeNodeExample(t *testing.T) {
	node := testenv.LookPath(t, "node")
	modules, err := filepath.Abs(filepath.Join("testdata", "node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "jose", "package.json")); err != nil {
		testenv.Skip(t, "testdata/node/node_modules/jose is absent (run npm ci in testdata/node, as .ci/run does): skipping the Node example")
	}
	issuer, good, bad := readmeTokens(t)
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"type": "module"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "example.js"), []byte(strings.ReplaceAll(readmeExample(t, "node"), readmeIssuer, issuer)), 0o644)
	os.WriteFile(filepath.Join(dir, "main.js"), []byte(`import { verifyToken } from './example.js';
import { createInterface } from 'node:readline';

const lines = [];
for await (const line of createInterface({ input: process.stdin })) lines.push(line);
for (const token of lines) {
  try {
    const claims = await verifyToken(token, 'shop');
    console.log(claims.sub && claims.email ? 'True' : 'False');
  } catch {
    console.log('False');
  }
}
`), 0o644)
	cmd := exec.Command(node, "main.js")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(strings.Join(append(good, bad...), "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	checkVerdicts(t, string(out), len(good), len(bad))
}
