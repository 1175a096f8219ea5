package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authd/authd/internal/testenv"
)

var (
	builtMu  sync.Mutex
	builtBin string
)

const builtVersion = "test-build"

// buildAuthd builds the real binary as the Dockerfile does (static,
// CGO_ENABLED=0), once per test process, into a temporary directory.
func buildAuthd(t testing.TB) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if builtBin != "" {
		return builtBin
	}
	goBin := testenv.LookPath(t, "go")
	dir, err := os.MkdirTemp("", "authd-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "authd")
	// The Dockerfile's build line.
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w -X main.version="+builtVersion, "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	builtBin = bin
	return bin
}

// startBinary runs bin with exactly env, in a directory of its own (no
// .env), and waits for readiness; its output is kept in memory.
func startBinary(t testing.TB, bin string, env map[string]string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cmd, base := startBinaryTo(t, bin, env, logs, logs.String)
	return cmd, base, logs
}

// startBinaryTo is startBinary with the output written to out (an
// *os.File is handed to the process as it is: no pipe, no goroutine of
// this process copying it); logs reads it back for a failure's message.
func startBinaryTo(t testing.TB, bin string, env map[string]string, out io.Writer, logs func() string) (*exec.Cmd, string) {
	t.Helper()
	env = cloneEnv(env)
	env["HOST"] = "127.0.0.1"
	env["PORT"] = strconv.Itoa(freePort(t))
	if env["AUTHD_DATA_DIR"] == "" {
		env["AUTHD_DATA_DIR"] = t.TempDir()
	}
	if env["METRICS_ADDR"] == "" {
		env["METRICS_ADDR"] = "127.0.0.1:0"
	}
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("authd log:\n%s", logs())
		}
	})
	base := "http://127.0.0.1:" + env["PORT"]
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(base + "/api/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the binary was not ready within 15s:\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGTERM to the real binary under load: readiness turns 503 first,
// requests keep being answered for SHUTDOWN_DELAY, the one in flight when
// the listener closes finishes, and every request sent gets its answer.
//
// The load behaves as a load balancer does: it goes on sending after
// SIGTERM until a probe has seen readiness 503, and a while longer (the
// balancer's lag), then sends nothing new; SHUTDOWN_DELAY covers that lag.
// A client that keeps opening connections to an instance being stopped
// cannot be protected by any server: connections the kernel has queued
// when the listening socket closes are reset.
func TestSIGTERMUnderLoad(t *testing.T) {
	env := newProduction(t)
	for _, k := range []string{"LIMIT_SEND_CODE_PER_IP", "LIMIT_VERIFY_CODE_PER_IP", "LIMIT_CODES_PER_ADDRESS", "LIMIT_FAILURES_PER_ADDRESS", "LIMIT_MAILS_TOTAL"} {
		env.Env[k] = "0"
	}
	env.Env["SHUTDOWN_DELAY"] = "700ms"
	env.Env["SHUTDOWN_TIMEOUT"] = "10s"
	bin := buildAuthd(t)
	cmd, base, logs := startBinary(t, bin, env.Env)

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}

	var (
		signalled, lbOut       atomic.Bool
		answered, afterSignal  atomic.Int64
		mu                     sync.Mutex
		dropped, bad           []string
		readyDown, okAfterDown atomic.Bool
	)
	post := func(path, body string) (int, error) {
		resp, err := hc.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !lbOut.Load(); i++ {
				email := fmt.Sprintf("term-%d-%d-%s@example.com", w, i, randHex(3))
				path, body := "/api/v1/auth/verify-code", `{"email":"`+email+`","project_id":"shop","code":"123456"}`
				if i%4 == 0 {
					path, body = "/api/v1/auth/send-code", `{"email":"`+email+`","project_id":"shop"}`
				}
				st, err := post(path, body)
				switch {
				case err != nil:
					mu.Lock()
					dropped = append(dropped, err.Error())
					mu.Unlock()
					return
				default:
					answered.Add(1)
					if signalled.Load() {
						afterSignal.Add(1)
						if readyDown.Load() && st == 200 {
							okAfterDown.Store(true)
						}
					}
					if st != 200 && st != 401 {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s: %d", path, st))
						mu.Unlock()
					}
				}
			}
		}()
	}
	// A request in flight across the listener's close: its body arrives
	// after SHUTDOWN_DELAY, and it must still be answered.
	slowDone := make(chan error, 1)
	slowStarted := make(chan struct{})
	pr, pw := io.Pipe()
	go func() {
		req, _ := http.NewRequest("POST", base+"/api/v1/auth/verify-code", pr)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = -1
		slowClient := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
		close(slowStarted)
		resp, err := slowClient.Do(req)
		if err != nil {
			slowDone <- err
			return
		}
		defer resp.Body.Close()
		io.ReadAll(resp.Body)
		if resp.StatusCode != 401 {
			err = fmt.Errorf("slow request answered %d", resp.StatusCode)
		}
		slowDone <- err
	}()
	<-slowStarted
	pw.Write([]byte(`{"email":"slow@example.com",`))

	time.Sleep(400 * time.Millisecond)
	if answered.Load() == 0 {
		t.Fatal("no load reached authd")
	}
	signalled.Store(true)
	sentAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness turns 503 while requests are still answered.
	for time.Since(sentAt) < 600*time.Millisecond {
		resp, err := hc.Get(base + "/api/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				readyDown.Store(true)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the balancer's lag
	lbOut.Store(true)
	wg.Wait()
	time.Sleep(time.Second) // past SHUTDOWN_DELAY: the listener is closed
	if _, err := post("/api/v1/auth/send-code", `{"email":"late@example.com","project_id":"shop"}`); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a new connection after SHUTDOWN_DELAY: %v, want refused", err)
	}
	pw.Write([]byte(`"project_id":"shop","code":"123456"}`))
	pw.Close()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("authd exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("authd did not exit within 15s of SIGTERM")
	}
	if err := <-slowDone; err != nil {
		t.Errorf("the request in flight at the listener's close: %v", err)
	}
	t.Logf("answered %d (%d after SIGTERM), dropped %d", answered.Load(), afterSignal.Load(), len(dropped))
	if len(dropped) > 0 {
		t.Errorf("requests dropped: %v", dropped)
	}
	if len(bad) > 0 {
		t.Errorf("unexpected statuses: %v", bad[:min(len(bad), 10)])
	}
	if !readyDown.Load() {
		t.Error("readiness never answered 503 after SIGTERM")
	}
	if !okAfterDown.Load() {
		t.Error("no request was answered 200 after readiness went 503: the delay did not hold the listener open")
	}
	if !strings.Contains(logs.String(), `"msg":"shutting down"`) {
		t.Error("no shutdown line")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	sharedCluster.Stop()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
