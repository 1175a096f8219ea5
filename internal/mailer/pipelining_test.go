package mailer_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// The transaction, pipelined (RFC 2920) or not, seen from the server's
// side of the wire: a server driven by hand on a raw TCP connection shows
// what go-smtp hides, whether a command arrives before the one before it
// was answered.

// rawServer is an SMTP server a test drives by hand, one connection at a
// time.
type rawServer struct {
	t  *testing.T
	ln net.Listener
}

func startRaw(t *testing.T) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &rawServer{t: t, ln: ln}
}

// sender returns a sender to r; edit, when given, changes its Config.
func (r *rawServer) sender(t *testing.T, edit ...func(*mailer.Config)) *mailer.SMTPSender {
	t.Helper()
	cfg := mailer.Config{
		Host:    "127.0.0.1",
		Port:    r.ln.Addr().(*net.TCPAddr).Port,
		From:    "info@example.com",
		Timeout: 5 * time.Second,
		HELO:    "authd.test",
	}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := mailer.NewSMTPSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// accept takes the next connection, greets it and answers its EHLO
// offering ext.
func (r *rawServer) accept(ext ...string) *rawConn {
	r.t.Helper()
	r.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	nc, err := r.ln.Accept()
	if err != nil {
		r.t.Fatalf("accept: %v", err)
	}
	c := &rawConn{t: r.t, c: nc}
	// Closed before the sender's own cleanup would wait for a QUIT reply.
	r.t.Cleanup(func() { nc.Close() })
	c.reply("220 raw.test ESMTP")
	if l := c.lines(1, 5*time.Second); !strings.HasPrefix(l[0], "EHLO ") {
		r.t.Fatalf("got %q, want EHLO", l[0])
	}
	ehlo := []string{"250-raw.test"}
	for _, e := range ext {
		ehlo = append(ehlo, "250-"+e)
	}
	ehlo = append(ehlo, "250 HELP")
	c.reply(ehlo...)
	return c
}

// rawConn is the server's end of one connection.
type rawConn struct {
	t     *testing.T
	c     net.Conn
	buf   []byte // read, not yet taken
	reads int    // reads that returned bytes since the last reply
}

// read reads once more into buf, by deadline.
func (c *rawConn) read(deadline time.Time) error {
	c.c.SetReadDeadline(deadline)
	p := make([]byte, 64<<10)
	n, err := c.c.Read(p)
	if n > 0 {
		c.reads++
		c.buf = append(c.buf, p[:n]...)
	}
	return err
}

// lines returns the next n lines the client sends, without their CRLF,
// failing the test when they have not all come within wait.
func (c *rawConn) lines(n int, wait time.Duration) []string {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for bytes.Count(c.buf, []byte("\r\n")) < n {
		if err := c.read(deadline); err != nil {
			c.t.Fatalf("%d of %d lines came within %v (%v): %q", bytes.Count(c.buf, []byte("\r\n")), n, wait, err, c.buf)
		}
	}
	var out []string
	for range n {
		i := bytes.Index(c.buf, []byte("\r\n"))
		out = append(out, string(c.buf[:i]))
		c.buf = c.buf[i+2:]
	}
	return out
}

// quiet fails the test when the client sends anything within wait: it is
// waiting for a reply.
func (c *rawConn) quiet(wait time.Duration) {
	c.t.Helper()
	if len(c.buf) > 0 {
		c.t.Fatalf("the client sent %q before it had its reply", c.buf)
	}
	err := c.read(time.Now().Add(wait))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("the client sent %q (%v) before it had its reply", c.buf, err)
	}
}

// reply writes lines, each with its CRLF, in one write.
func (c *rawConn) reply(lines ...string) {
	c.t.Helper()
	c.reads = 0
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("reply: %v", err)
	}
}

// data reads a message up to its ending dot and returns it as sent,
// dot-stuffed, without the dot's line.
func (c *rawConn) data() string {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if i := bytes.Index(c.buf, []byte("\r\n.\r\n")); i >= 0 {
			msg := string(c.buf[:i+2])
			c.buf = c.buf[i+5:]
			return msg
		}
		if err := c.read(deadline); err != nil {
			c.t.Fatalf("the message did not end (%v): %d bytes", err, len(c.buf))
		}
	}
}

// firstMessage answers a new connection's first transaction, pipelined:
// MAIL FROM alone, then RCPT TO and DATA together; it returns the
// message (data).
func (c *rawConn) firstMessage() string {
	c.t.Helper()
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "MAIL FROM:") {
		c.t.Fatalf("got %q, want MAIL FROM", got)
	}
	c.reply("250 ok")
	if got := c.lines(2, 5*time.Second); !strings.HasPrefix(got[0], "RCPT TO:") || got[1] != "DATA" {
		c.t.Fatalf("got %q, want RCPT TO and DATA", got)
	}
	c.reply("250 ok", "354 go ahead")
	return c.data()
}

// quickSender is sender with a timeout of 300 ms, for stalls.
func (r *rawServer) quickSender(t *testing.T) *mailer.SMTPSender {
	t.Helper()
	return r.sender(t, func(c *mailer.Config) { c.Timeout = 300 * time.Millisecond })
}

// firstMail delivers a first mail from s on a new connection, pipelined:
// the next MAIL FROM comes with its dot, and the server answers with
// replies. It returns the connection, kept.
func (r *rawServer) firstMail(t *testing.T, s *mailer.SMTPSender, replies ...string) *rawConn {
	t.Helper()
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME")
	c.firstMessage()
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "MAIL FROM:") {
		t.Fatalf("%q after the dot, want the next MAIL FROM", got)
	}
	c.reply(replies...)
	if err := result(t, done); err != nil {
		t.Fatalf("first mail: %v", err)
	}
	return c
}

// mailAlone delivers a mail from s on a new connection and fails the test
// when a MAIL FROM comes with its dot.
func (r *rawServer) mailAlone(t *testing.T, s *mailer.SMTPSender) {
	t.Helper()
	done := sendAsync(s, "345678")
	c := r.accept("PIPELINING", "8BITMIME")
	if msg := c.firstMessage(); !strings.Contains(msg, "345678") {
		t.Error("the message lacks its code")
	}
	c.quiet(200 * time.Millisecond) // MAIL FROM alone
	c.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("mail on a new connection: %v", err)
	}
}

// hungUp fails the test unless the client closes the connection without
// sending anything more.
func (c *rawConn) hungUp() {
	c.t.Helper()
	err := c.read(time.Now().Add(5 * time.Second))
	if len(c.buf) > 0 || !errors.Is(err, io.EOF) {
		c.t.Fatalf("the client sent %d bytes (%q...) and %v, want a close and nothing", len(c.buf), c.buf[:min(len(c.buf), 80)], err)
	}
}

// sendAsync runs s.Send in a goroutine; the channel gets its result.
func sendAsync(s *mailer.SMTPSender, code string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Send(context.Background(), message("ana@example.com", code)) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return")
		return nil
	}
}

// With PIPELINING offered, a new connection's MAIL FROM goes alone, then
// RCPT TO and DATA come in one read, before the server has answered
// either. The next mail's MAIL FROM comes with the message's ending dot,
// before the dot is answered (RFC 2920 §3.1), and its reply is read when
// the next mail comes: that mail, on the kept connection, waits for it
// (when it has not come yet), then sends its RCPT TO and DATA in one
// read. A server that holds its replies answers the dot and MAIL FROM in
// one write, as Postfix does. Close reads MAIL FROM's reply before its
// QUIT. The command bytes are those go-mail sent.
func TestSMTPSenderPipelines(t *testing.T) {
	const mailFrom = "MAIL FROM:<info@example.com> BODY=8BITMIME"
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
	if got := c.lines(1, 5*time.Second)[0]; got != mailFrom {
		t.Errorf("first mail: %q, want MAIL FROM", got)
	}
	c.quiet(200 * time.Millisecond) // MAIL FROM waits for its reply
	c.reply("250 2.1.0 ok")
	for i, code := range []string{"123456", "654321", "765432"} {
		switch i {
		case 1:
			done = sendAsync(s, code) // MAIL FROM answered already
		case 2:
			done = sendAsync(s, code)
			c.quiet(200 * time.Millisecond) // RCPT TO waits for MAIL FROM's reply
			c.reply("250 2.1.0 ok")
		}
		got := c.lines(2, 5*time.Second)
		want := []string{"RCPT TO:<ana@example.com>", "DATA"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("mail %d: commands %q, want %q", i, got, want)
		}
		if c.reads != 1 {
			t.Errorf("mail %d: RCPT TO and DATA came in %d reads, want 1", i, c.reads)
		}
		c.reply("250 2.1.5 ok", "354 go ahead")
		msg := c.data()
		t.Logf("mail %d: %d bytes of message in %d reads", i, len(msg), c.reads)
		if !strings.Contains(msg, code) {
			t.Errorf("mail %d: the message lacks its code", i)
		}
		if got := c.lines(1, 5*time.Second)[0]; got != mailFrom {
			t.Errorf("mail %d: %q after the dot, want the next MAIL FROM", i, got)
		}
		if i == 0 {
			c.reply("250 2.0.0 queued", "250 2.1.0 ok") // held, then answered together
		} else {
			c.reply("250 2.0.0 queued")
		}
		if err := result(t, done); err != nil {
			t.Fatalf("mail %d: Send: %v", i, err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	c.quiet(200 * time.Millisecond) // QUIT waits for MAIL FROM's reply
	c.reply("250 2.1.0 ok")
	if got := c.lines(1, 5*time.Second)[0]; got != "QUIT" {
		t.Errorf("Close sent %q, want QUIT", got)
	}
	c.reply("221 2.0.0 bye")
	if err := result(t, closed); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A kept connection whose MAIL FROM went out with the last message,
// answered 250, and which the server then closed idle with a 421 (as
// Postfix does at its timeout): the next mail meets the 421 at RCPT TO,
// takes it for a dead connection, not for its recipient's answer, and
// goes out on a new one.
func TestSMTPSenderAheadMailFromThenIdleClose(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME")
	c.firstMessage()
	c.lines(1, 5*time.Second) // the next MAIL FROM
	c.reply("250 queued", "250 ok")
	if err := result(t, done); err != nil {
		t.Fatalf("first mail: %v", err)
	}
	c.reply("421 4.4.2 raw.test Error: timeout exceeded")
	c.c.Close()

	done = sendAsync(s, "654321")
	c2 := r.accept("PIPELINING", "8BITMIME")
	if msg := c2.firstMessage(); !strings.Contains(msg, "654321") {
		t.Error("the second message lacks its code")
	}
	c2.lines(1, 5*time.Second) // the next MAIL FROM
	c2.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("second mail, after the idle close: %v", err)
	}
}

// A MAIL FROM sent with the last message and refused is the next mail's
// refusal at MAIL FROM, classified as one alone would be, against the real server: no
// message is offered on that connection, and the mail after goes out on
// a new one.
func TestSMTPSenderAheadMailFromRefused(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdMail, func(n int, _ string) *smtp.SMTPError {
		if n == 2 {
			return reply(451)
		}
		return nil
	}))
	s := newSender(t, srv, nil)
	ctx := context.Background()
	if err := s.Send(ctx, message("ana@example.com", "123456")); err != nil {
		t.Fatalf("first Send: %v", err)
	}
	se := sendError(t, s.Send(ctx, message("ana@example.com", "234567")))
	if !se.Temporary || !se.Reply || !se.Session {
		t.Errorf("451 to the MAIL FROM sent ahead: %+v, want temporary, answered, the session's", se)
	}
	if err := s.Send(ctx, message("ana@example.com", "345678")); err != nil {
		t.Fatalf("third Send: %v", err)
	}
	got := srv.Wait(t, 2, 5*time.Second)
	if len(got) != 2 || smtptest.CodeFrom(got[0]) != "123456" || smtptest.CodeFrom(got[1]) != "345678" {
		t.Errorf("delivered %d messages, want the first and the third", len(got))
	}
	if n := srv.Attempts(); n != 2 {
		t.Errorf("%d messages offered, want 2", n)
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("connections = %d, want 2: the refused one was reused", n)
	}
}

// Without PIPELINING, each command waits for its reply: nothing more comes
// until the server has answered.
func TestSMTPSenderWithoutPipelining(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("8BITMIME", "ENHANCEDSTATUSCODES")
	for _, step := range []struct{ cmd, reply string }{
		{"MAIL FROM:<info@example.com> BODY=8BITMIME", "250 2.1.0 ok"},
		{"RCPT TO:<ana@example.com>", "250 2.1.5 ok"},
		{"DATA", "354 go ahead"},
	} {
		if got := c.lines(1, 5*time.Second)[0]; got != step.cmd {
			t.Fatalf("got %q, want %q", got, step.cmd)
		}
		c.quiet(300 * time.Millisecond)
		c.reply(step.reply)
	}
	if msg := c.data(); !strings.Contains(msg, "123456") {
		t.Errorf("the message lacks its code")
	}
	c.quiet(300 * time.Millisecond) // nothing with the dot: no MAIL FROM ahead
	c.reply("250 2.0.0 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("Send: %v", err)
	}
	c.quiet(300 * time.Millisecond) // nor after its reply
}

// A server that refuses RCPT TO and still answers the pipelined DATA 354
// gets no message: the client hangs up without one, and the transaction,
// never ended by its dot, is discarded. The refusal is the recipient's,
// and the reply's copy of the address stays out of the error.
func TestSMTPSenderPipelinedRcptRefusedSendsNothing(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
	c.lines(1, 5*time.Second)
	c.reply("250 2.1.0 ok")
	c.lines(2, 5*time.Second)
	c.reply("550 5.1.1 <ana@example.com>: no such user", "354 go ahead")
	c.hungUp()
	err := result(t, done)
	if err == nil {
		t.Fatal("Send succeeded")
	}
	se := sendError(t, err)
	if se.Temporary || !se.Reply || se.Session {
		t.Errorf("a 550 to RCPT TO is permanent, answered, the recipient's: %+v", se)
	}
	if strings.Contains(err.Error(), "ana@example.com") {
		t.Errorf("error text holds the address: %v", err)
	}
}

// relay sits between the sender and srv and keeps what the sender writes,
// read by read: against go-smtp, which offers PIPELINING, it shows that
// the transaction was pipelined.
type relay struct {
	mu     sync.Mutex
	chunks []string
}

func startRelay(t *testing.T, srv *smtptest.Server) (*relay, string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				client.Close()
				continue
			}
			wg.Go(func() {
				defer server.Close()
				io.Copy(client, server)
				client.Close()
			})
			wg.Go(func() {
				defer client.Close()
				p := make([]byte, 64<<10)
				for {
					n, err := client.Read(p)
					if n > 0 {
						r.mu.Lock()
						r.chunks = append(r.chunks, string(p[:n]))
						r.mu.Unlock()
						if _, err := server.Write(p[:n]); err != nil {
							return
						}
					}
					if err != nil {
						server.Close()
						return
					}
				}
			})
		}
	})
	return r, "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

// count returns how many times s occurs in what the sender wrote.
func (r *relay) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Count(strings.Join(r.chunks, ""), s)
}

// pipelined reports whether some read held RCPT TO and the message:
// go-smtp offers CHUNKING, and the message goes as BDAT.
func (r *relay) pipelined() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.chunks {
		if strings.HasPrefix(c, "RCPT TO:") && strings.Contains(c, "\r\nBDAT ") && strings.Contains(c, " LAST\r\n") {
			return true
		}
	}
	return false
}

// Against the real server, pipelined: a refusal at RCPT TO or at MAIL
// FROM is classified as it always was, nothing is delivered, and the
// connection is not reused (the next mail, pipelined, goes on a new one);
// a delivered mail arrives whole.
func TestSMTPSenderPipelinedAgainstServer(t *testing.T) {
	first := func(code int) func(int, string) *smtp.SMTPError {
		return func(n int, _ string) *smtp.SMTPError {
			if n == 1 {
				return reply(code)
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name                      string
		cmd                       smtptest.Command
		code                      int
		temporary, reply, session bool
	}{
		{"RCPT TO 550", smtptest.CmdRcpt, 550, false, true, false},
		{"MAIL FROM 451", smtptest.CmdMail, 451, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.WithCommandReply(tc.cmd, first(tc.code)))
			rl, host, port := startRelay(t, srv)
			s := newSender(t, srv, func(c *mailer.Config) { c.Host, c.Port = host, port })
			err := s.Send(context.Background(), message("ana@example.com", "123456"))
			if err == nil {
				t.Fatal("Send succeeded")
			}
			t.Logf("error: %v", err)
			se := sendError(t, err)
			if se.Temporary != tc.temporary || se.Reply != tc.reply || se.Session != tc.session {
				t.Errorf("got %+v, want temporary %v, reply %v, session %v", se, tc.temporary, tc.reply, tc.session)
			}
			if n := srv.Attempts(); n != 0 {
				t.Errorf("%d messages offered after the refusal", n)
			}
			// The next mail goes out on a new connection.
			if err := s.Send(context.Background(), message("ana@example.com", "234567")); err != nil {
				t.Fatalf("second Send: %v", err)
			}
			if got := srv.Wait(t, 1, 5*time.Second); len(got) != 1 || smtptest.CodeFrom(got[0]) != "234567" {
				t.Errorf("delivered %d messages, want only the second", len(got))
			}
			if n := srv.Connections(); n != 2 {
				t.Errorf("connections = %d, want 2: the failed one was reused", n)
			}
			if !rl.pipelined() {
				t.Errorf("RCPT TO and BDAT were not written together")
			}
		})
	}

	t.Run("delivered", func(t *testing.T) {
		srv := smtptest.Start(t)
		rl, host, port := startRelay(t, srv)
		s := newSender(t, srv, func(c *mailer.Config) { c.Host, c.Port = host, port })
		if err := s.Send(context.Background(), message("ana@example.com", "345678")); err != nil {
			t.Fatalf("Send: %v", err)
		}
		m := srv.Wait(t, 1, 5*time.Second)[0]
		if !rl.pipelined() {
			t.Errorf("RCPT TO and BDAT were not written together")
		}
		if m.ParseErr != nil {
			t.Fatalf("parse: %v", m.ParseErr)
		}
		if m.From != "info@example.com" || len(m.To) != 1 || m.To[0] != "ana@example.com" {
			t.Errorf("envelope %q -> %q", m.From, m.To)
		}
		if m.Subject != "Your verification code for Example Shop" || m.Header.Get("Message-Id") == "" || m.Header.Get("Auto-Submitted") != "auto-generated" {
			t.Errorf("headers: %v", m.Header)
		}
		for part, body := range map[string]string{"text": m.Text, "html": m.HTML} {
			if !strings.Contains(body, "345678") || !strings.Contains(body, "Example Shop") {
				t.Errorf("%s part lacks the code or the project:\n%s", part, body)
			}
		}
		if got := smtptest.CodeFrom(m); got != "345678" {
			t.Errorf("CodeFrom = %q", got)
		}
	})
}

// The network timeout at RCPT TO is read off the error through TLS as
// well: still the recipient's stall, not the session's.
func TestSMTPSenderStallAtRcptOverTLS(t *testing.T) {
	stall := func(int, string) *smtp.SMTPError { time.Sleep(1500 * time.Millisecond); return nil }
	for name, opt := range map[string]smtptest.Option{"STARTTLS": smtptest.WithTLS(), "implicit TLS": smtptest.WithImplicitTLS()} {
		t.Run(name, func(t *testing.T) {
			srv := smtptest.Start(t, opt, smtptest.WithCommandReply(smtptest.CmdRcpt, stall))
			s := newSender(t, srv, func(c *mailer.Config) {
				c.TLS, c.ImplicitTLS, c.TLSConfig = true, name == "implicit TLS", srv.ClientTLSConfig()
				c.Timeout = 300 * time.Millisecond
			})
			se := sendError(t, s.Send(context.Background(), message("ana@example.com", "123456")))
			if !se.Temporary || se.Reply || se.Session {
				t.Fatalf("%+v; want temporary, no reply, not the session's", se)
			}
		})
	}
}

// A MAIL FROM refused with the enhanced code 5.7.0 (RFC 3463, which
// go-smtp's ENHANCEDSTATUSCODES puts in the reply's text) points at the
// credentials whatever its basic code; another 5xx at the sender.
func TestSMTPSenderMailFromEnhancedCode(t *testing.T) {
	for _, tc := range []struct {
		enhanced smtp.EnhancedCode
		setting  string
	}{
		{smtp.EnhancedCode{5, 7, 0}, "SMTP_USER, SMTP_PASSWORD"},
		{smtp.EnhancedCode{5, 1, 0}, "EMAILS_FROM_EMAIL"},
	} {
		srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdMail, func(int, string) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 550, EnhancedCode: tc.enhanced, Message: "refused"}
		}))
		s := newSender(t, srv, nil)
		se := sendError(t, s.Send(context.Background(), message("ana@example.com", "123456")))
		if se.Temporary || !se.Reply || !se.Session || se.Setting != tc.setting {
			t.Errorf("550 %v: %+v, want permanent, answered, the session's, %s", tc.enhanced, se, tc.setting)
		}
	}
}

// A pipelining server that holds its replies until it has checked the
// recipient (as Postfix and Exim flush theirs only when they wait for
// input) and runs past the timeout on a tarpit address: the wait is the
// recipient's, as at RCPT TO, not the session's (mail does not look
// degraded), and the kept connection is not taken for a dead one (no
// second connection, waiting as long again). MAIL FROM is never in RCPT
// TO's write, so that this holds: there, its reply would be held too.
func TestSMTPSenderPipelinedHeldReplyIsTheRecipients(t *testing.T) {
	r := startRaw(t)
	s := r.quickSender(t)
	c := r.firstMail(t, s, "250 queued")
	// The second mail, on the kept connection: MAIL FROM, come with the
	// first mail's dot, answered at once (the server waits for input),
	// then RCPT TO's and DATA's replies held past the timeout.
	done := sendAsync(s, "654321")
	c.reply("250 ok")
	c.lines(2, 5*time.Second)
	err := result(t, done)
	if err == nil {
		t.Fatal("Send succeeded with no reply")
	}
	if se := sendError(t, err); !se.Temporary || se.Session {
		t.Errorf("a held reply past the timeout: %+v, want temporary and not the session's", se)
	}
	r.ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if nc, err := r.ln.Accept(); err == nil {
		nc.Close()
		t.Error("Send dialled again after a timeout, as if the kept connection had died")
	}
}

// A recipient answered 421 at RCPT TO on a kept connection (as a policy
// service can for chosen domains) looks like a connection dropped while
// idle, and is tried once more, on a new connection, not on every kept
// one: anyone can ask codes for such a recipient, and must not empty the
// pool with one. The new connection's 421 is the answer: the recipient's.
func TestSMTPSenderRecipient421CostsOneConnection(t *testing.T) {
	var arrived sync.WaitGroup
	arrived.Add(4)
	srv := smtptest.Start(t,
		smtptest.WithCommandReply(smtptest.CmdData, func(n int, _ string) *smtp.SMTPError {
			if n <= 4 { // the first 4 messages wait for each other: 4 connections, kept
				arrived.Done()
				arrived.Wait()
			}
			return nil
		}),
		smtptest.WithCommandReply(smtptest.CmdRcpt, func(_ int, to string) *smtp.SMTPError {
			if strings.Contains(to, "policy") {
				return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "try again later"}
			}
			return nil
		}))
	s := newSender(t, srv, nil)
	ctx := context.Background()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() { errs <- s.Send(ctx, message("ana@example.com", "12345"+strconv.Itoa(i))) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if n := srv.Connections(); n != 4 {
		t.Fatalf("%d connections, want 4", n)
	}
	se := sendError(t, s.Send(ctx, message("policy@example.com", "234567")))
	if !se.Temporary || !se.Reply || se.Session {
		t.Errorf("421 at RCPT TO on a new connection: %+v, want temporary, answered, the recipient's", se)
	}
	if n := srv.Commands(smtptest.CmdRcpt); n != 4+2 {
		t.Errorf("%d RCPT TO for 5 mails, want 6: the kept connection's and one new one's for the 421", n)
	}
	if n := srv.Connections(); n != 5 {
		t.Errorf("%d connections, want 5", n)
	}
	for i := range 3 { // the other kept connections still serve
		if err := s.Send(ctx, message("ana@example.com", "34567"+strconv.Itoa(i))); err != nil {
			t.Fatalf("Send after the 421: %v", err)
		}
	}
	if n := srv.Connections(); n != 5 {
		t.Errorf("%d connections after 3 more mails, want 5", n)
	}
}

// A server that offers PIPELINING and yet drops what follows the ending
// dot never answers the MAIL FROM that went with it: the next mail times
// out there (the session's, as any stall at MAIL FROM), and from then on
// MAIL FROM goes alone, so that no later mail waits for a reply that will
// not come.
func TestSMTPSenderAheadMailFromLostFallsBack(t *testing.T) {
	r := startRaw(t)
	s := r.quickSender(t)
	r.firstMail(t, s, "250 queued") // the MAIL FROM that went with the dot: dropped
	se := sendError(t, result(t, sendAsync(s, "234567")))
	if !se.Temporary || se.Reply || !se.Session {
		t.Errorf("MAIL FROM unanswered: %+v, want temporary, no reply, the session's", se)
	}

	r.mailAlone(t, s)
}

// A server holding its replies that takes the message, then stalls on
// the MAIL FROM that came with its dot past the timeout: the message's
// outcome is unknown, and Send says temporary, the session's, so that the
// worker retries it (the mail may arrive twice, same code, as after a cut
// at the dot; README's failure table says so). From then on MAIL FROM
// goes alone.
func TestSMTPSenderAheadMailFromHeldPastTimeout(t *testing.T) {
	r := startRaw(t)
	s := r.quickSender(t)
	c := r.firstMail(t, s, "250 queued", "250 ok") // MAIL FROM with the dot: both replies held
	done := sendAsync(s, "234567")
	c.lines(2, 5*time.Second)
	c.reply("250 ok", "354 go ahead")
	c.data()
	c.lines(1, 5*time.Second) // the next MAIL FROM; the sender checks it past the timeout
	se := sendError(t, result(t, done))
	if !se.Temporary || se.Reply || !se.Session {
		t.Errorf("the dot's reply held past the timeout: %+v, want temporary, no reply, the session's", se)
	}

	r.mailAlone(t, s)
}

// A sender that keeps no connection (MaxIdle < 0) sends no MAIL FROM
// ahead: nothing follows the dot but, once it is answered, QUIT.
func TestSMTPSenderNotKeptSendsNothingAhead(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t, func(c *mailer.Config) { c.MaxIdle = -1 })
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME")
	c.firstMessage()
	c.quiet(200 * time.Millisecond)
	c.reply("250 queued")
	if got := c.lines(1, 5*time.Second)[0]; got != "QUIT" {
		t.Errorf("after the message's reply: %q, want QUIT", got)
	}
	c.reply("221 bye")
	if err := result(t, done); err != nil {
		t.Fatalf("Send: %v", err)
	}
}
