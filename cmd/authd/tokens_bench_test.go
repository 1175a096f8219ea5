package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/jwt"
	"github.com/authd/authd/internal/sqlite"
	"github.com/authd/authd/verify"
)

// countingKeys counts every call that reaches the key store.
type countingKeys struct {
	authd.KeyStore
	calls atomic.Int64
}

func (c *countingKeys) SigningKeys(ctx context.Context) ([]authd.SigningKey, error) {
	c.calls.Add(1)
	return c.KeyStore.SigningKeys(ctx)
}

func (c *countingKeys) EnsureSigningKey(ctx context.Context, gen func() (authd.SigningKey, error)) ([]authd.SigningKey, error) {
	c.calls.Add(1)
	return c.KeyStore.EnsureSigningKey(ctx, gen)
}

// jwksHandler is authd's HTTP layer with keys loaded from a SQLite store
// whose calls are counted.
func jwksHandler(tb testing.TB) (http.Handler, *countingKeys) {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "authd.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	keys, _ := authd.DeriveKeys(make([]byte, 32))
	store := &countingKeys{KeyStore: s}
	set, err := jwt.New(context.Background(), &jwt.StoreSource{Store: store, Key: keys.Token},
		jwt.Options{Issuer: "https://auth.example.com", TTL: 15 * time.Minute, CacheMaxAge: 5 * time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	return httpapi.New(httpapi.Options{ProjectName: "bench", Tokens: set, Proofs: verify.NewProofVerifier(testSecret, time.Minute)}), store
}

// The JWKS and the discovery document are answered from memory: no call
// reaches the database however many requests come.
func TestJWKSServedFromMemory(t *testing.T) {
	h, store := jwksHandler(t)
	before := store.calls.Load()
	for range 100 {
		for _, path := range []string{"/.well-known/jwks.json", "/.well-known/openid-configuration"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != 200 {
				t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
		}
	}
	if n := store.calls.Load() - before; n != 0 {
		t.Fatalf("%d key store calls while serving 200 requests, want none", n)
	}
}

// BenchmarkJWKS serves /.well-known/jwks.json through authd's whole HTTP
// stack, from memory.
func BenchmarkJWKS(b *testing.B) {
	h, store := jwksHandler(b)
	before := store.calls.Load()
	req := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
	b.ReportMetric(float64(store.calls.Load()-before), "db-calls")
}

// BenchmarkVerifyCodeToken compares v1 verify-code with v2, which also
// signs a token, through authd's full HTTP path on Redis and PostgreSQL:
//
//	go test -run '^$' -bench VerifyCodeToken -benchtime 5000x ./cmd/authd
func BenchmarkVerifyCodeToken(b *testing.B) {
	for _, version := range []string{"v1", "v2"} {
		b.Run(version, func(b *testing.B) {
			srv, mail := benchAuthd(b)
			run := randHex(4)
			issueCodes(b, srv.URL, mail, run)
			load(b, srv.URL+"/api/"+version+"/auth/verify-code", 200, func(i int) []byte {
				e := benchEmail(run, i)
				return []byte(`{"email":"` + e + `","project_id":"shop","code":"` + mail.code(e) + `"}`)
			})
		})
	}
}
