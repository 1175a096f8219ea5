package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/testenv"
)

// The README's Go sign-in example (x/oauth2 + go-oidc) built as a
// client's own module would build it, run as a web server, and driven
// through a sign-in against authd: it prints the signed-in address.
func TestReadmeSignInExample(t *testing.T) {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = testenv.LookPath(t, "go")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- example: go-signin -->\n```go\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no go-signin example")
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	version := func(mod string) string {
		v := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + ` (v\S+)`).FindSubmatch(gomod)
		if v == nil {
			t.Fatalf("go.mod does not require %s", mod)
		}
		return string(v[1])
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/app\n\ngo 1.24\n\nrequire (\n\tgithub.com/coreos/go-oidc/v3 "+version("github.com/coreos/go-oidc/v3")+
		"\n\tgolang.org/x/oauth2 "+version("golang.org/x/oauth2")+
		// go-oidc's own dependency, at the version the module cache holds.
		"\n\tgithub.com/go-jose/go-jose/v4 "+version("github.com/go-jose/go-jose/v4")+" // indirect\n)\n")
	sum, _ := os.ReadFile("../../go.sum")
	write("go.sum", string(sum))
	write("signin/signin.go", string(m[1]))
	write("main.go", `package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"

	"example.com/app/signin"
)

func main() {
	c, err := signin.New(context.Background(), os.Args[1], "app", os.Args[2], "http://127.0.0.1:"+os.Args[3]+"/callback")
	if err != nil {
		panic(err)
	}
	http.HandleFunc("/login", c.Login)
	http.HandleFunc("/callback", func(w http.ResponseWriter, r *http.Request) {
		email, err := c.Callback(r)
		if err != nil {
			fmt.Println("refused:", err)
			http.Error(w, err.Error(), 403)
			return
		}
		fmt.Println("signed in:", email)
		fmt.Fprintln(w, "hello", email)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[3])
	if err != nil {
		panic(err)
	}
	fmt.Println("listening")
	panic(http.Serve(ln, nil))
}
`)
	e := startSignIn(t, nil)
	iss := e.inst.Env["AUTHD_ISSUER"]
	port := strconv.Itoa(freePort(t))
	build := exec.Command(gobin, "build", "-o", filepath.Join(dir, "app"), ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOPROXY=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app := exec.CommandContext(ctx, filepath.Join(dir, "app"), iss, rpSecret, port)
	stdout, _ := app.StdoutPipe()
	app.Stderr = os.Stderr
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); app.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "listening" {
			t.Fatalf("the example said %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the example did not start")
	}
	// One browser for both sites: the example's cookies and authd's.
	b := newBrowser(t, iss, "Mozilla/5.0 Firefox/140.0")
	start := b.do("GET", "http://127.0.0.1:"+port+"/login", nil)
	if start.Status != 302 || !strings.HasPrefix(start.Location, iss+"/oauth2/authorize?") {
		t.Fatalf("/login: %d %q", start.Status, start.Location)
	}
	email := uniqueEmail("readme")
	n := len(e.smtp.Messages())
	p := toCodePage(t, b, start.Location, email)
	code, _ := signInMail(t, e.smtp, email, n)
	form := hidden(t, p)
	form.Set("code", code)
	p = b.post("/signin/code", form)
	if p.Status != 303 {
		t.Fatalf("code: %d\n%s", p.Status, p.Body)
	}
	done := b.do("GET", p.Location, nil)
	if done.Status != 200 || !strings.Contains(done.Body, email) {
		t.Fatalf("callback: %d %s", done.Status, done.Body)
	}
	if l := <-lines; l != "signed in: "+email {
		t.Fatalf("the example said %q", l)
	}
}
