package mailer_test

import (
	"context"
	"testing"

	"github.com/authd/authd/internal/smtptest"
)

// BenchmarkSMTPSenderSend: one mail after another on a kept connection to
// a real server that answers at once, over loopback TCP: the cost of one
// delivered mail's transaction, its round trips and the server's work
// included (the server runs in this process, so its allocations count).
//
//	go test -run '^$' -bench SMTPSenderSend -benchmem -count 5 ./internal/mailer
func BenchmarkSMTPSenderSend(b *testing.B) {
	srv := smtptest.Start(b, smtptest.WithHandler(func(smtptest.Message) {}))
	s := newSender(b, srv, nil)
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
}
