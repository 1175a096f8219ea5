package mailer_test

import (
	"context"
	"testing"

	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// BenchmarkSMTPSenderSend: one mail after another on a kept connection to
// a real server that answers at once: the cost of one delivered mail's
// transaction, its round trips and the server's work included (the server
// runs in this process, so its allocations count). Over loopback, and
// through a proxy that delays the server's every answer by 1 ms, as a
// relay in the same region: there the round trips are what a mail costs.
//
//	go test -run '^$' -bench SMTPSenderSend -benchmem -count 5 ./internal/mailer
func BenchmarkSMTPSenderSend(b *testing.B) {
	for _, latency := range []int{0, 1} {
		name := "loopback"
		if latency > 0 {
			name = "1ms-replies"
		}
		b.Run(name, func(b *testing.B) {
			srv := smtptest.Start(b, smtptest.WithHandler(func(smtptest.Message) {}))
			var edit func(*mailer.Config)
			if latency > 0 {
				p := testenv.StartProxy(b, srv.Addr())
				p.Toxic("latency", "downstream", map[string]any{"latency": latency})
				edit = func(c *mailer.Config) { c.Port = p.Port() }
			}
			s := newSender(b, srv, edit)
			m := message("ana@example.com", "123456")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Send(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			if n := srv.Connections(); n != 1 {
				b.Errorf("%d connections, want 1 kept", n)
			}
		})
	}
}
