package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The cost of the access log and the metrics: the same authd with them on
// (an access line per request, JSON-encoded at info level to a discarding
// writer, and every series) and off.
//
//	go test -run '^$' -bench Observability -benchtime 20000x -count 3 ./cmd/authd

func benchObserved(b *testing.B, observe bool) *httptest.Server {
	b.Helper()
	env := benchEnv(b)
	env["LOG_LEVEL"] = "info"
	cfg, err := loadConfig(envOf(env))
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := newApp(context.Background(), cfg, log, overrides{sender: &captureSender{codes: map[string]string{}}, noObserve: !observe})
	if err != nil {
		b.Fatal(err)
	}
	a.worker.Start()
	srv := httptest.NewServer(a.handler)
	b.Cleanup(func() {
		srv.Close()
		a.worker.Close(context.Background())
		a.close()
	})
	return srv
}

func BenchmarkObservability(b *testing.B) {
	for _, mode := range []struct {
		name string
		on   bool
	}{{"off", false}, {"on", true}} {
		b.Run("send-code/"+mode.name, func(b *testing.B) {
			srv := benchObserved(b, mode.on)
			run := randHex(4)
			load(b, srv.URL+"/api/v1/auth/send-code", 200, func(i int) []byte {
				return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
			})
		})
		// No store call: the largest share the access log and metrics can
		// take of a request.
		b.Run("health/"+mode.name, func(b *testing.B) {
			srv := benchObserved(b, mode.on)
			loadGet(b, srv.URL+"/api/v1/health")
		})
	}
}

// loadGet is load for GETs.
func loadGet(b *testing.B, url string) {
	b.Helper()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	began := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := benchClient.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "req/s")
}
