package main

import (
	"bytes"
	"io"
	"slices"
	"testing"
	"time"
)

// BenchmarkVerifyFailure measures verify-code's failure latency for each
// reason it can fail: the four must not be told apart by timing (issue 4).
// Each reason gets its own addresses, prepared before the clock starts.
//
//	go test -run '^$' -bench VerifyFailure -benchtime 2000x -count 3 ./cmd/authd
func BenchmarkVerifyFailure(b *testing.B) {
	for _, reason := range []string{"wrong", "expired", "burned", "never-sent"} {
		b.Run(reason, func(b *testing.B) {
			ttl := "300"
			if reason == "expired" {
				ttl = "1"
			}
			srv, mail := benchAuthd(b, "OTP_EXPIRE_SECONDS", ttl)
			run := randHex(4)
			verify := func(i int, code string) {
				resp, err := benchClient.Post(srv.URL+"/api/v1/auth/verify-code", "application/json",
					bytes.NewReader([]byte(`{"email":"`+benchEmail(run, i)+`","project_id":"shop","code":"`+code+`"}`)))
				if err != nil || (resp.StatusCode != 401 && resp.StatusCode != 200) {
					b.Fatalf("verify-code: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if reason != "never-sent" {
				issueCodes(b, srv.URL, mail, run)
			}
			switch reason {
			case "burned":
				for i := range b.N {
					code := mail.code(benchEmail(run, i))
					for k := range 5 {
						verify(i, wrongCode(code, k))
					}
				}
			case "expired":
				time.Sleep(1100 * time.Millisecond)
			}
			// One request at a time: a timing side channel shows in the
			// latency of a lone request, not in a loaded server's queue.
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				began := time.Now()
				verify(i, wrongCode(mail.code(benchEmail(run, i)), 99))
				lat[i] = time.Since(began)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
		})
	}
}
