package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The CPU the access log and metrics add to one request, in-process (no
// network, a flow that answers at once): compare with a real request's
// cost (BenchmarkObservability in cmd/authd).
//
//	go test -run '^$' -bench ObserveOverhead -count 5 ./internal/httpapi
func BenchmarkObserveOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		opts := Options{ProjectName: "P", Flow: &opsFlow{}, Logger: slog.New(slog.DiscardHandler)}
		if on {
			name = "on"
			reg := prometheus.NewRegistry()
			opts.Observe = &Observer{Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Metrics: NewMetrics(reg, reg)}
		}
		h := New(opts)
		b.Run("send-code/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/api/v1/auth/send-code", strings.NewReader(`{"email":"ana@example.com","project_id":"shop"}`))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
