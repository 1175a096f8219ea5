package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/postgres"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// The speed benchmarks of issue 2: authd's full send-code and verify-code
// paths over HTTP against real Redis and PostgreSQL, each beside its
// ceiling, a bare net/http handler making the same store calls.
//
//	go test -run '^$' -bench 'SendCode|VerifyCode' -benchmem -benchtime 20000x ./cmd/authd

// captureSender is the benchmark's mailbox: it keeps each address's newest
// code and sends nothing.
type captureSender struct {
	mu    sync.Mutex
	codes map[string]string
	n     atomic.Int64
}

func (c *captureSender) Send(_ context.Context, m authd.Message) error {
	c.mu.Lock()
	c.codes[m.To] = m.Code
	c.mu.Unlock()
	c.n.Add(1)
	return nil
}

func (c *captureSender) code(email string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[email]
}

// benchEnv is a production configuration with every limit off.
func benchEnv(b *testing.B) map[string]string {
	prefix := "bench-" + randHex(4) + ":"
	dropRedisPrefix(b, testenv.RedisURL(b), prefix) // the mail streams have no TTL
	return map[string]string{
		"DATABASE_URL": scratchDatabase(b), "REDIS_URL": testenv.RedisURL(b),
		"REDIS_KEY_PREFIX": prefix,
		"MAIL_BACKEND":     "log", "LOG_LEVEL": "error",
		"SECRET_KEY": testSecret, "AUTHD_MASTER_KEY": randHex(32), "AUTHD_DATA_DIR": b.TempDir(),
		"AUTHD_ISSUER":           testIssuer,
		"LIMIT_SEND_CODE_PER_IP": "0", "LIMIT_VERIFY_CODE_PER_IP": "0",
		"LIMIT_CODES_PER_ADDRESS": "0", "LIMIT_FAILURES_PER_ADDRESS": "0", "LIMIT_MAILS_TOTAL": "0",
	}
}

// noWorkers, as an override, leaves the mail workers stopped: the jobs
// wait in Redis, and the benchmark measures the request path alone.
const noWorkers = "bench:no-workers"

// benchAuthd starts authd in-process on benchEnv; vars are variable,
// value pairs to set.
func benchAuthd(b *testing.B, vars ...string) (*httptest.Server, *captureSender) {
	b.Helper()
	env := benchEnv(b)
	workers := true
	for i := 0; i+1 < len(vars); i += 2 {
		if vars[i] == noWorkers {
			workers = false
			continue
		}
		env[vars[i]] = vars[i+1]
	}
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	mail := &captureSender{codes: map[string]string{}}
	a, err := newApp(context.Background(), cfg, log, overrides{sender: mail})
	if err != nil {
		b.Fatal(err)
	}
	if workers {
		a.worker.Start()
	}
	srv := httptest.NewServer(a.handler)
	b.Cleanup(func() {
		srv.Close()
		a.worker.Close(context.Background())
		a.close()
	})
	return srv, mail
}

// ceiling is the bare handler: decode, the same store calls, encode.
type ceiling struct {
	rdb    *goredis.Client
	prefix string
	issued sync.Map // email -> the code its last send issued
	codes  *redis.Store
	users  *postgres.Store
	keys   authd.Keys
	sign   *proof.HMAC
}

// issueKnown stores the code 123456 for each of n addresses, straight in
// the store, for the ceiling's verify-code to consume.
func (c *ceiling) issueKnown(b *testing.B, n int, email func(i int) string) {
	b.Helper()
	now := time.Now()
	for i := range n {
		e := email(i)
		if _, err := c.codes.IssueCode(context.Background(), authd.IssueRequest{
			Address: addrOf(e), Project: "shop", ClientIP: "127.0.0.1", Now: now,
			Record: authd.CodeRecord{ID: "id", Hash: authd.CodeHash(c.keys.Code, "shop", e, "123456"), ExpiresAt: now.Add(5 * time.Minute)},
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCeiling(b *testing.B) (*httptest.Server, *ceiling) {
	b.Helper()
	env := benchEnv(b)
	opt, err := goredis.ParseURL(env["REDIS_URL"])
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 64 // authd's REDIS_POOL_SIZE
	rdb := goredis.NewClient(opt)
	// A pool for 64 connections' worth of upserts, not pgx's default of 4.
	users, err := postgres.OpenPool(context.Background(), env["DATABASE_URL"], 32, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := users.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	keys, _ := authd.DeriveKeys([]byte(randHex(32)))
	c := &ceiling{rdb: rdb, prefix: env["REDIS_KEY_PREFIX"], codes: redis.New(rdb, redis.Options{Prefix: env["REDIS_KEY_PREFIX"]}),
		users: users, keys: keys, sign: proof.NewHMAC(testSecret)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Email     string `json:"email"`
			ProjectID string `json:"project_id"`
		}
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		now := time.Now()
		code, _ := authd.NewCode(rand.Reader, authd.CodeLength)
		c.issued.Store(in.Email, code)
		// The same single EVALSHA as authd's: the code and its mail job
		// (a payload the size of a sealed message, the code in clear at
		// its start for BenchmarkLoad's bare mailer) in one script.
		_, err := c.codes.IssueCode(r.Context(), authd.IssueRequest{
			Address: authd.Address{Key: in.Email, Mailbox: in.Email}, Project: in.ProjectID, ClientIP: "127.0.0.1", Now: now,
			Record: authd.CodeRecord{ID: "id", Hash: authd.CodeHash(c.keys.Code, in.ProjectID, in.Email, code), ExpiresAt: now.Add(5 * time.Minute)},
			Job: &authd.MailJob{
				DeliveryID: randHex(16), Address: authd.Address{Key: in.Email, Mailbox: in.Email}, Project: in.ProjectID, CodeID: "id",
				ExpiresAt: now.Add(5 * time.Minute), ReplaceableAt: now.Add(time.Minute), Sealed: append([]byte(code), sealedSized[len(code):]...),
			},
		})
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"message":"Verification code sent successfully"}`))
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Email     string `json:"email"`
			ProjectID string `json:"project_id"`
			Code      string `json:"code"`
		}
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		now := time.Now()
		if _, err := c.codes.ConsumeCode(r.Context(), authd.ConsumeRequest{
			Address: authd.Address{Key: in.Email, Mailbox: in.Email}, Project: in.ProjectID, ClientIP: "127.0.0.1", Now: now,
			Hash: authd.CodeHash(c.keys.Code, in.ProjectID, in.Email, in.Code), AttemptsPerCode: 5,
		}); err != nil {
			http.Error(w, "invalid", http.StatusUnauthorized)
			return
		}
		u, err := c.users.UpsertVerified(r.Context(), in.Email, now)
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		p := c.sign.Sign(authd.Proof{AuthUserID: u.ID, Email: in.Email, ProjectID: in.ProjectID, Verified: true, IssuedAt: now.Unix()})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p)
	})
	srv := httptest.NewServer(mux)
	b.Cleanup(func() { srv.Close(); users.Close(); rdb.Close() })
	return srv, c
}

// sealedSized stands for a sealed mail message in the ceiling's job.
var sealedSized = bytes.Repeat([]byte{0xa5}, 240)

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}

// load runs b.N requests from 16 goroutines per CPU and reports req/s and
// latency percentiles. body(i) is the i-th request's body.
func load(b *testing.B, url string, want int, body func(i int) []byte) {
	b.Helper()
	var next atomic.Int64
	lat := make([]time.Duration, b.N)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1) - 1)
			began := time.Now()
			resp, err := benchClient.Post(url, "application/json", bytes.NewReader(body(i)))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(began)
			if resp.StatusCode != want {
				b.Errorf("request %d: status %d", i, resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func benchEmail(run string, i int) string { return "b" + strconv.Itoa(i) + "-" + run + "@example.com" }

// issueCodes asks authd at baseURL for a code for each of b.N addresses of
// run, 32 at a time, and waits until the mailbox holds them all: the verify
// benchmarks' setup, done before the clock starts.
func issueCodes(b *testing.B, baseURL string, mail *captureSender, run string) {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := benchClient.Post(baseURL+"/api/v1/auth/send-code", "application/json",
				bytes.NewReader([]byte(`{"email":"`+benchEmail(run, i)+`","project_id":"shop"}`)))
			if err != nil {
				b.Errorf("send-code: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("send-code: status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	for deadline := time.Now().Add(60 * time.Second); mail.n.Load() < int64(b.N); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d codes captured", mail.n.Load(), b.N)
		}
	}
}

func BenchmarkSendCode(b *testing.B) {
	// authd: the whole service, its mail workers draining the queue on
	// the same two cores. authd-request-path: the workers stopped, so the
	// figure compares with the ceiling, which sends no mail.
	b.Run("authd", func(b *testing.B) {
		srv, _ := benchAuthd(b)
		run := randHex(4)
		load(b, srv.URL+"/api/v1/auth/send-code", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
		})
	})
	b.Run("authd-request-path", func(b *testing.B) {
		srv, _ := benchAuthd(b, noWorkers, "")
		run := randHex(4)
		load(b, srv.URL+"/api/v1/auth/send-code", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
		})
	})
	b.Run("ceiling", func(b *testing.B) {
		srv, _ := benchCeiling(b)
		run := randHex(4)
		load(b, srv.URL+"/send", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
		})
	})
}

func BenchmarkVerifyCode(b *testing.B) {
	b.Run("authd", func(b *testing.B) {
		srv, mail := benchAuthd(b)
		run := randHex(4)
		issueCodes(b, srv.URL, mail, run)
		load(b, srv.URL+"/api/v1/auth/verify-code", 200, func(i int) []byte {
			e := benchEmail(run, i)
			return []byte(`{"email":"` + e + `","project_id":"shop","code":"` + mail.code(e) + `"}`)
		})
	})
	b.Run("ceiling", func(b *testing.B) {
		srv, c := benchCeiling(b)
		run := randHex(4)
		c.issueKnown(b, b.N, func(i int) string { return benchEmail(run, i) })
		load(b, srv.URL+"/verify", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop","code":"123456"}`)
		})
	})
}

// BenchmarkMailDelivery: codes reaching a real SMTP server that answers at
// once, with the default MAIL_WORKERS, end to end through run().
//
//	go test -run '^$' -bench MailDelivery -benchtime 5000x ./cmd/authd
func BenchmarkMailDelivery(b *testing.B) {
	smtp := smtptest.Start(b)
	env := benchEnv(b)
	delete(env, "MAIL_BACKEND")
	env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_TLS"] = smtp.Host(), strconv.Itoa(smtp.Port()), "false"
	env["PORT"] = strconv.Itoa(freePort(b))
	env["HOST"] = "127.0.0.1"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, nil, io.Discard, io.Discard) }()
	defer func() { cancel(); <-done }()
	url := "http://127.0.0.1:" + env["PORT"]
	for i := 0; ; i++ {
		if resp, err := http.Get(url + "/api/v1/health"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 500 {
			b.Fatal("authd did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run := randHex(4)
	b.ResetTimer()
	began := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			resp, err := benchClient.Post(url+"/api/v1/auth/send-code", "application/json",
				bytes.NewReader([]byte(`{"email":"`+benchEmail(run, i)+`","project_id":"shop"}`)))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("send-code: %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return // refused sends have no mail to wait for
	}
	smtp.Wait(b, b.N, 5*time.Minute)
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "mails/s")
}

// addrOf is the store's name of an address whose mailbox is its own.
func addrOf(key string) authd.Address { return authd.Address{Key: key, Mailbox: key} }
