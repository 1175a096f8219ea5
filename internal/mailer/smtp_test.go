package mailer_test

import (
	"context"
	"errors"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

var testNow = time.Date(2025, 11, 29, 10, 0, 0, 0, time.UTC)

// message returns a verification mail for to with code.
func message(to, code string) authd.Message {
	return authd.Message{
		To:          to,
		ProjectID:   "shop",
		ProjectName: "Example Shop",
		Code:        code,
		TTL:         5 * time.Minute,
		ExpiresAt:   time.Now().Add(5 * time.Minute),
		Address:     authd.Address{Key: "k:" + to, Mailbox: "k:" + to},
		CodeID:      "id-" + code,
	}
}

// newSender returns an SMTPSender for srv with plain SMTP, then edit(cfg).
func newSender(t testing.TB, srv *smtptest.Server, edit func(*mailer.Config)) *mailer.SMTPSender {
	t.Helper()
	cfg := mailer.Config{
		Host:     srv.Host(),
		Port:     srv.Port(),
		From:     "info@example.com",
		FromName: "Auth Service",
		Timeout:  5 * time.Second,
		HELO:     "authd.test",
		Now:      func() time.Time { return testNow },
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := mailer.NewSMTPSender(cfg)
	if err != nil {
		t.Fatalf("NewSMTPSender: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reply(code int) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "scripted reply"}
}

// sendError returns err as a *authd.SendError or fails t.
func sendError(t *testing.T, err error) *authd.SendError {
	t.Helper()
	var se *authd.SendError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *authd.SendError", err, err)
	}
	return se
}

func TestSMTPSenderDelivers(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithAuth("mailer", "s3cret"))
	s := newSender(t, srv, func(c *mailer.Config) { c.Username, c.Password = "mailer", "s3cret" })

	if err := s.Send(context.Background(), message("ana@exämple.com", "123456")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	m := srv.Wait(t, 1, 5*time.Second)[0]
	if m.ParseErr != nil {
		t.Fatalf("parse: %v", m.ParseErr)
	}

	const puny = "ana@xn--exmple-cua.com"
	if m.From != "info@example.com" || len(m.To) != 1 || m.To[0] != puny {
		t.Errorf("envelope = %q -> %q, want info@example.com -> %s", m.From, m.To, puny)
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil || from.Name != "Auth Service" || from.Address != "info@example.com" {
		t.Errorf("From = %q (%v)", m.Header.Get("From"), err)
	}
	if to := m.Header.Get("To"); !strings.Contains(to, puny) {
		t.Errorf("To = %q, want %s", to, puny)
	}
	if m.Subject != "Your verification code for Example Shop" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if id := m.Header.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID = %q", id)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(testNow) {
		t.Errorf("Date = %q (%v), want %v", m.Header.Get("Date"), err, testNow)
	}
	if a := m.Header.Get("Auto-Submitted"); a != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", a)
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type = %q", ct)
	}
	for part, body := range map[string]string{"text": m.Text, "html": m.HTML} {
		for _, want := range []string{"123456", "5 minutes", "Example Shop"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q:\n%s", part, want, body)
			}
		}
	}
	if got := smtptest.CodeFrom(m); got != "123456" {
		t.Errorf("CodeFrom = %q", got)
	}
	for _, h := range []string{"User-Agent", "X-Mailer"} {
		if v := m.Header.Get(h); v != "" {
			t.Errorf("%s = %q: the library and version are nobody's business", h, v)
		}
	}
}

func TestSMTPSenderHeaderInjection(t *testing.T) {
	srv := smtptest.Start(t)
	s := newSender(t, srv, func(c *mailer.Config) { c.FromName = "Auth\r\nBcc: evil@example.net" })
	m := message("ana@example.com", "123456")
	m.ProjectName = "Shop\r\nBcc: evil@example.net\nX-Evil: 1"
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.Wait(t, 1, 5*time.Second)[0]
	if len(got.To) != 1 || got.Header.Get("Bcc") != "" || got.Header.Get("X-Evil") != "" {
		t.Errorf("a CR/LF in a display name made a header: To %q, header %v", got.To, got.Header)
	}
	if !strings.Contains(got.Subject, "Shop Bcc: evil@example.net X-Evil: 1") {
		t.Errorf("Subject = %q", got.Subject)
	}
}

func TestSMTPSenderSTARTTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithTLS(), smtptest.WithAuth("u", "p"))
	s := newSender(t, srv, func(c *mailer.Config) {
		c.TLS = true
		c.TLSConfig = srv.ClientTLSConfig()
		c.Username, c.Password = "u", "p"
	})
	if err := s.Send(context.Background(), message("ana@example.com", "222222")); err != nil {
		t.Fatalf("Send over STARTTLS: %v", err)
	}
	srv.Wait(t, 1, 5*time.Second)
}

func TestSMTPSenderImplicitTLS(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithImplicitTLS(), smtptest.WithAuth("u", "p"))
	s := newSender(t, srv, func(c *mailer.Config) {
		c.TLS, c.ImplicitTLS = true, true
		c.TLSConfig = srv.ClientTLSConfig()
		c.Username, c.Password = "u", "p"
	})
	if err := s.Send(context.Background(), message("ana@example.com", "333333")); err != nil {
		t.Fatalf("Send over implicit TLS: %v", err)
	}
	srv.Wait(t, 1, 5*time.Second)
}

// TLS is never given up silently: a server without STARTTLS, or with a
// certificate the client does not trust, gets nothing, and the failure is
// permanent (a retry would meet the same server).
func TestSMTPSenderNoDowngrade(t *testing.T) {
	plain := smtptest.Start(t, smtptest.WithAuth("u", "p"))
	untrusted := smtptest.Start(t, smtptest.WithTLS(), smtptest.WithAuth("u", "p"))
	for name, srv := range map[string]*smtptest.Server{"no STARTTLS": plain, "untrusted certificate": untrusted} {
		t.Run(name, func(t *testing.T) {
			s := newSender(t, srv, func(c *mailer.Config) {
				c.TLS = true
				c.Username, c.Password = "u", "p"
			})
			err := s.Send(context.Background(), message("ana@example.com", "444444"))
			if err == nil {
				t.Fatal("Send succeeded without TLS")
			}
			t.Logf("error: %v", err)
			if se := sendError(t, err); se.Temporary {
				t.Errorf("Temporary = true for %v", err)
			}
			if strings.Contains(err.Error(), "444444") || strings.Contains(err.Error(), "ana@") {
				t.Errorf("error text leaks: %v", err)
			}
			if n := srv.Attempts(); n != 0 {
				t.Errorf("server got %d messages", n)
			}
		})
	}
}

func TestSMTPSenderFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      int
		temporary bool
	}{
		{"451 local error", 451, true},
		{"421 service unavailable", 421, true},
		{"452 insufficient storage", 452, true},
		{"550 mailbox unavailable", 550, false},
		{"554 transaction failed", 554, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithReply(func(int) *smtp.SMTPError { return reply(tc.code) }))
			s := newSender(t, srv, nil)
			err := s.Send(context.Background(), message("ana@example.com", "555555"))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			t.Logf("error: %v", err)
			if se := sendError(t, err); se.Temporary != tc.temporary {
				t.Errorf("Temporary = %v, want %v (%v)", se.Temporary, tc.temporary, err)
			}
			if strings.Contains(err.Error(), "555555") || strings.Contains(err.Error(), "ana@example.com") {
				t.Errorf("error text leaks the code or the address: %v", err)
			}
		})
	}
}

func TestSMTPSenderAuthFailure(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithAuth("u", "p"))
	s := newSender(t, srv, func(c *mailer.Config) { c.Username, c.Password = "u", "wrong-password" })
	err := s.Send(context.Background(), message("ana@example.com", "123456"))
	if se := sendError(t, err); se.Temporary {
		t.Errorf("535 is permanent: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("error text holds the password: %v", err)
	}
}

func TestSMTPSenderConnectionRefused(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s, err := mailer.NewSMTPSender(mailer.Config{Host: "127.0.0.1", Port: port, From: "info@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Send(context.Background(), message("ana@example.com", "123456"))
	if se := sendError(t, err); !se.Temporary {
		t.Errorf("connection refused is temporary: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusal took %v", d)
	}
}

func TestSMTPSenderSlowServer(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.WithDelay(10*time.Second))
		s := newSender(t, srv, func(c *mailer.Config) { c.Timeout = 200 * time.Millisecond })
		start := time.Now()
		err := s.Send(context.Background(), message("ana@example.com", "123456"))
		if se := sendError(t, err); !se.Temporary || se.Reply || !se.Session {
			t.Errorf("a timeout is temporary, unanswered, the session's: %+v", se)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Send returned after %v with a 200ms timeout", d)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.WithDelay(10*time.Second))
		s := newSender(t, srv, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Send(ctx, message("ana@example.com", "123456"))
		if se := sendError(t, err); !se.Temporary || se.Reply || !se.Session {
			t.Errorf("a cancelled send is temporary, unanswered, the session's: %+v", se)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Send returned after %v with a 200ms context", d)
		}
	})
}

// TestSMTPSenderClassifies: every failure says whether it may pass
// (Temporary), whether the server answered (Reply), whether it is the
// session's rather than this recipient's (Session), and what to check
// (Setting), against a real server refusing at each step.
func TestSMTPSenderClassifies(t *testing.T) {
	const (
		host = "SMTP_HOST, SMTP_PORT"
		tls  = "SMTP_TLS"
		user = "SMTP_USER, SMTP_PASSWORD"
		from = "EMAILS_FROM_EMAIL"
	)
	at := func(cmd smtptest.Command, code int) smtptest.Option {
		return smtptest.WithCommandReply(cmd, func(int, string) *smtp.SMTPError { return reply(code) })
	}
	hangup := func(cmd smtptest.Command) smtptest.Option {
		return smtptest.WithCommandReply(cmd, func(int, string) *smtp.SMTPError { return smtptest.Hangup })
	}
	for _, tc := range []struct {
		name   string
		server []smtptest.Option
		closed bool // the server is gone: its port refuses connections
		edit   func(c *mailer.Config, srv *smtptest.Server)
		want   authd.SendError
	}{
		{name: "connection refused", closed: true,
			want: authd.SendError{Temporary: true, Session: true, Setting: host}},
		{name: "RCPT TO 451", server: []smtptest.Option{at(smtptest.CmdRcpt, 451)},
			want: authd.SendError{Temporary: true, Reply: true}},
		{name: "RCPT TO 550", server: []smtptest.Option{at(smtptest.CmdRcpt, 550)},
			want: authd.SendError{Reply: true}},
		{name: "RCPT TO hung up", server: []smtptest.Option{hangup(smtptest.CmdRcpt)},
			want: authd.SendError{Temporary: true, Session: true}},
		{name: "MAIL FROM 451", server: []smtptest.Option{at(smtptest.CmdMail, 451)},
			want: authd.SendError{Temporary: true, Reply: true, Session: true}},
		{name: "MAIL FROM 553", server: []smtptest.Option{at(smtptest.CmdMail, 553)},
			want: authd.SendError{Reply: true, Session: true, Setting: from}},
		{name: "MAIL FROM 530 AUTH required", server: []smtptest.Option{smtptest.WithAuth("u", "p")},
			want: authd.SendError{Reply: true, Session: true, Setting: user}},
		{name: "DATA 451", server: []smtptest.Option{at(smtptest.CmdData, 451)},
			want: authd.SendError{Temporary: true, Reply: true, Session: true}},
		{name: "DATA 554", server: []smtptest.Option{at(smtptest.CmdData, 554)},
			want: authd.SendError{Reply: true, Session: true}},
		{name: "DATA hung up", server: []smtptest.Option{hangup(smtptest.CmdData)},
			want: authd.SendError{Temporary: true, Session: true}},
		{name: "STARTTLS not offered", server: nil,
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.TLS = true },
			want: authd.SendError{Reply: true, Session: true, Setting: tls}},
		{name: "certificate not trusted", server: []smtptest.Option{smtptest.WithTLS()},
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.TLS = true },
			want: authd.SendError{Session: true, Setting: tls}},
		{name: "implicit TLS against plain SMTP", server: nil,
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.TLS, c.ImplicitTLS = true, true },
			want: authd.SendError{Session: true, Setting: tls}},
		{name: "AUTH refused", server: []smtptest.Option{smtptest.WithAuth("u", "p")},
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.Username, c.Password = "u", "wrong-password" },
			want: authd.SendError{Reply: true, Session: true, Setting: user}},
		{name: "AUTH not offered", server: nil,
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.Username, c.Password = "u", "p" },
			want: authd.SendError{Reply: true, Session: true, Setting: user}},
		{name: "SMTP_TLS=false, MAIL FROM refused without TLS", server: []smtptest.Option{smtptest.WithTLSRequired()},
			want: authd.SendError{Reply: true, Session: true, Setting: tls}},
		{name: "SMTP_TLS=false, AUTH offered only after STARTTLS", server: []smtptest.Option{smtptest.WithTLSRequired(), smtptest.WithAuth("u", "p")},
			edit: func(c *mailer.Config, _ *smtptest.Server) { c.Username, c.Password = "u", "p" },
			want: authd.SendError{Reply: true, Session: true, Setting: tls}},
		{name: "STARTTLS and AUTH refused", server: []smtptest.Option{smtptest.WithTLS(), smtptest.WithAuth("u", "p")},
			edit: func(c *mailer.Config, srv *smtptest.Server) {
				c.TLS, c.TLSConfig = true, srv.ClientTLSConfig()
				c.Username, c.Password = "u", "wrong-password"
			},
			want: authd.SendError{Reply: true, Session: true, Setting: user}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, tc.server...)
			if tc.closed {
				srv.Close()
			}
			s := newSender(t, srv, func(c *mailer.Config) {
				if tc.edit != nil {
					tc.edit(c, srv)
				}
			})
			err := s.Send(context.Background(), message("ana@example.com", "565656"))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			t.Logf("error: %v", err)
			se := sendError(t, err)
			got := authd.SendError{Temporary: se.Temporary, Reply: se.Reply, Session: se.Session, Setting: se.Setting}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			for _, secret := range []string{"565656", "ana@example.com", "wrong-password"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error text holds %q: %v", secret, err)
				}
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("%d messages accepted", n)
			}
		})
	}
}

func TestSMTPSenderReusesConnections(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithAuth("u", "p"))
	s := newSender(t, srv, func(c *mailer.Config) { c.Username, c.Password = "u", "p" })
	ctx := context.Background()
	for i := range 5 {
		if err := s.Send(ctx, message("ana@example.com", "10000"+string(rune('0'+i)))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	srv.Wait(t, 5, 5*time.Second)
	if n := srv.Connections(); n != 1 {
		t.Errorf("5 sequential messages used %d connections, want 1", n)
	}

	// The server drops the kept connection, after answering the MAIL FROM
	// that went ahead with the last message: the next message notices at
	// RCPT TO and goes out on a new one.
	srv.DropConnections()
	if err := s.Send(ctx, message("ana@example.com", "200000")); err != nil {
		t.Fatalf("Send after the server dropped the connection: %v", err)
	}
	srv.Wait(t, 6, 5*time.Second)
	if n := srv.Connections(); n != 2 {
		t.Errorf("connections = %d, want 2", n)
	}
	if n := srv.Attempts(); n != 6 {
		t.Errorf("attempts = %d, want 6 (no duplicate)", n)
	}
}

func TestSMTPSenderConcurrent(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithAuth("u", "p"))
	s := newSender(t, srv, func(c *mailer.Config) { c.Username, c.Password = "u", "p"; c.MaxIdle = 4 })
	const workers, each = 8, 10
	errs := make(chan error, workers*each)
	for w := range workers {
		go func() {
			for i := range each {
				errs <- s.Send(context.Background(), message("ana@example.com", "3"+strings.Repeat("0", 3)+string(rune('0'+w))+string(rune('0'+i))))
			}
		}()
	}
	for range workers * each {
		if err := <-errs; err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	srv.Wait(t, workers*each, 10*time.Second)
	if n := srv.Connections(); n > workers*each/2 {
		t.Errorf("%d messages used %d connections", workers*each, n)
	}
}

func TestNewSMTPSenderRejects(t *testing.T) {
	for name, cfg := range map[string]mailer.Config{
		"no host":          {From: "info@example.com"},
		"bad port":         {Host: "localhost", Port: 70000, From: "info@example.com"},
		"bad from":         {Host: "localhost", From: "not an address"},
		"from with name":   {Host: "localhost", From: "Name <info@example.com>"},
		"implicit w/o TLS": {Host: "localhost", From: "info@example.com", ImplicitTLS: true},
	} {
		if _, err := mailer.NewSMTPSender(cfg); err == nil {
			t.Errorf("%s: NewSMTPSender accepted %+v", name, cfg)
		}
	}
}

// A server that stalls at RCPT TO is slow on that recipient (a callout, a
// tarpit): not the session's failure, so that one recipient neither holds
// up the others' mail in the lag nor makes mail degraded — whether the
// stall outlasts the network timeout or the caller's deadline. A stall at
// MAIL FROM stalls every mail: the session's.
func TestSMTPSenderStallAtRcptIsTheRecipients(t *testing.T) {
	stall := func(int, string) *smtp.SMTPError { time.Sleep(1500 * time.Millisecond); return nil }
	for _, tc := range []struct {
		name        string
		cmd         smtptest.Command
		timeout     time.Duration // the sender's network timeout
		deadline    time.Duration // the caller's
		wantSession bool
	}{
		{"RCPT TO, network timeout", smtptest.CmdRcpt, 300 * time.Millisecond, 10 * time.Second, false},
		{"RCPT TO, caller's deadline", smtptest.CmdRcpt, 10 * time.Second, 300 * time.Millisecond, false},
		{"MAIL FROM, network timeout", smtptest.CmdMail, 300 * time.Millisecond, 10 * time.Second, true},
		{"MAIL FROM, caller's deadline", smtptest.CmdMail, 10 * time.Second, 300 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithCommandReply(tc.cmd, stall))
			s := newSender(t, srv, func(c *mailer.Config) { c.Timeout = tc.timeout })
			ctx, cancel := context.WithTimeout(t.Context(), tc.deadline)
			defer cancel()
			se := sendError(t, s.Send(ctx, message("ana@example.com", "123456")))
			if !se.Temporary || se.Reply || se.Session != tc.wantSession {
				t.Fatalf("%s: %+v; want temporary, no reply, session %v", tc.name, se, tc.wantSession)
			}
		})
	}
}

// A line of the mail that begins with a dot reaches the server whole: no
// line of a template (nor a code in one) can end the message early and
// have what follows read as SMTP commands, in 7bit parts and
// quoted-printable ones alike; as DATA, dot-stuffed, to a server that
// does not offer CHUNKING, and as BDAT, as it is, to one that does. A
// relay shows which went.
func TestSMTPSenderDotStuffs(t *testing.T) {
	text := ".\n.starts with a dot\n..two\nCode {{.Code}}, {{.Minutes}} minutes\n.\nQUIT\n."
	for _, cmd := range []string{"DATA", "BDAT"} {
		for name, html := range map[string]string{
			"7bit":             "<p>{{.Code}}</p>\n.\nRSET\n..",
			"quoted-printable": "<p>{{.Code}} — ✓</p>\n.\nRSET\n.",
		} {
			t.Run(cmd+"/"+name, func(t *testing.T) {
				tmpl, err := mailer.LoadTemplates(writeTemplates(t, map[string]string{"body.txt": text, "body.html": html}))
				if err != nil {
					t.Fatal(err)
				}
				var opts []smtptest.Option
				if cmd == "DATA" {
					opts = append(opts, smtptest.WithoutChunking())
				}
				srv := smtptest.Start(t, opts...)
				rl, host, port := startRelay(t, srv)
				s := newSender(t, srv, func(c *mailer.Config) { c.Templates, c.Host, c.Port = tmpl, host, port })
				m := message("ana@example.com", "123456")
				for range 2 { // the second on the kept connection: the first ended where it should
					if err := s.Send(context.Background(), m); err != nil {
						t.Fatalf("Send: %v", err)
					}
				}
				want, err := tmpl.Render(m)
				if err != nil {
					t.Fatal(err)
				}
				got := srv.Wait(t, 2, 5*time.Second)
				for _, g := range got {
					if g.Text != want.Text || g.HTML != want.HTML {
						t.Errorf("received\n%q\n%q\nwant\n%q\n%q", g.Text, g.HTML, want.Text, want.HTML)
					}
					if !strings.Contains(string(g.Data), "Content-Transfer-Encoding: "+name+"\r\n") {
						t.Errorf("no %s part in\n%s", name, g.Data)
					}
				}
				if n := srv.Commands(smtptest.CmdData); n != 2 {
					t.Errorf("%d messages offered, want 2", n)
				}
				if n := rl.count("\r\n" + cmd + " "); cmd == "BDAT" && n != 2 {
					t.Errorf("%d BDAT commands, want 2", n)
				}
				if n := rl.count("\r\nDATA\r\n"); cmd == "DATA" && n != 2 || cmd == "BDAT" && n != 0 {
					t.Errorf("%d DATA commands with %s, want %d", n, cmd, map[string]int{"DATA": 2, "BDAT": 0}[cmd])
				}
			})
		}
	}
}
