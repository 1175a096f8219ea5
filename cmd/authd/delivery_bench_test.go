package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/smtptest"
)

// dropRedisPrefix deletes every key under prefix when tb ends: the mail
// queue's streams, unlike the other keys, have no TTL.
func dropRedisPrefix(tb testing.TB, redisURL, prefix string) {
	tb.Cleanup(func() {
		opt, err := goredis.ParseURL(redisURL)
		if err != nil {
			return
		}
		rdb := goredis.NewClient(opt)
		defer rdb.Close()
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			rdb.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
	})
}

// BenchmarkSendCodeSMTP: send-code's latency does not depend on the SMTP
// server, since the mail is queued in the code's own Redis script. The
// same load against an SMTP server that answers at once and one that takes
// 200 ms per message (with the default 16 workers the queue grows: the
// point is that send-code does not notice).
//
//	go test -run '^$' -bench SendCodeSMTP -benchtime 5000x ./cmd/authd
func BenchmarkSendCodeSMTP(b *testing.B) {
	for _, sink := range []struct {
		name  string
		delay time.Duration
	}{{"instant", 0}, {"200ms", 200 * time.Millisecond}} {
		b.Run(sink.name, func(b *testing.B) {
			var opts []smtptest.Option
			if sink.delay > 0 {
				opts = append(opts, smtptest.WithDelay(sink.delay))
			}
			smtp := smtptest.Start(b, opts...)
			env := benchEnv(b)
			delete(env, "MAIL_BACKEND")
			env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_TLS"] = smtp.Host(), strconv.Itoa(smtp.Port()), "false"
			cfg, err := loadConfig(envOf(env))
			if err != nil {
				b.Fatal(err)
			}
			a, err := newApp(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), overrides{})
			if err != nil {
				b.Fatal(err)
			}
			a.worker.Start()
			srv := httptest.NewServer(a.handler)
			b.Cleanup(func() {
				srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				a.worker.Close(ctx)
				a.close()
			})
			run := randHex(4)
			load(b, srv.URL+"/api/v1/auth/send-code", 200, func(i int) []byte {
				return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
			})
		})
	}
}
