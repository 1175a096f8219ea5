package mailer_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// CHUNKING (RFC 3030) seen from the server's side of the wire, as the
// pipelining tests see PIPELINING: the message goes as one BDAT chunk of
// its exact size, not dot-stuffed, and with PIPELINING in RCPT TO's
// write.

// chunk reads "BDAT <size> LAST" and the chunk after it, and returns the
// chunk.
func (c *rawConn) chunk() string {
	c.t.Helper()
	line := c.lines(1, 5*time.Second)[0]
	size, ok := strings.CutSuffix(strings.TrimPrefix(line, "BDAT "), " LAST")
	n, err := strconv.Atoi(size)
	if !ok || !strings.HasPrefix(line, "BDAT ") || err != nil {
		c.t.Fatalf("got %q, want BDAT <size> LAST", line)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(c.buf) < n {
		if err := c.read(deadline); err != nil {
			c.t.Fatalf("%d of the chunk's %d bytes came (%v)", len(c.buf), n, err)
		}
	}
	msg := string(c.buf[:n])
	c.buf = c.buf[n:]
	return msg
}

// joined reads a mail's one write when RCPT TO goes with the chunk:
// RCPT TO, the chunk, the next mail's MAIL FROM; it returns the chunk.
func (c *rawConn) joined() string {
	c.t.Helper()
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "RCPT TO:") {
		c.t.Fatalf("got %q, want RCPT TO", got)
	}
	msg := c.chunk()
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "MAIL FROM:") {
		c.t.Fatalf("got %q after the chunk, want the next MAIL FROM", got)
	}
	return msg
}

// chunkedMail starts a mail from s with code, takes its new connection
// (PIPELINING and CHUNKING offered) and answers its MAIL FROM.
func (r *rawServer) chunkedMail(s *mailer.SMTPSender, code string) (<-chan error, *rawConn) {
	r.t.Helper()
	done := sendAsync(s, code)
	c := r.accept("PIPELINING", "CHUNKING")
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "MAIL FROM:") {
		r.t.Fatalf("got %q, want MAIL FROM", got)
	}
	c.reply("250 ok")
	return done, c
}

// With PIPELINING and CHUNKING, a new connection's MAIL FROM goes alone;
// then RCPT TO, BDAT with the whole message and the next mail's MAIL FROM
// come in one read, before the server has answered any: one round trip a
// mail on a kept connection. The chunk is the message as DATA would carry
// it, unstuffed, CRLF at its end, and its size is BDAT's.
func TestSMTPSenderChunks(t *testing.T) {
	const mailFrom = "MAIL FROM:<info@example.com> BODY=8BITMIME"
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("PIPELINING", "8BITMIME", "CHUNKING")
	if got := c.lines(1, 5*time.Second)[0]; got != mailFrom {
		t.Fatalf("first mail: %q, want MAIL FROM", got)
	}
	c.quiet(200 * time.Millisecond) // MAIL FROM waits for its reply
	c.reply("250 ok")
	for i, code := range []string{"123456", "654321"} {
		if i > 0 {
			done = sendAsync(s, code)
		}
		if got := c.lines(1, 5*time.Second)[0]; got != "RCPT TO:<ana@example.com>" {
			t.Fatalf("mail %d: %q, want RCPT TO", i, got)
		}
		msg := c.chunk()
		if got := c.lines(1, 5*time.Second)[0]; got != mailFrom {
			t.Errorf("mail %d: %q after the chunk, want the next MAIL FROM", i, got)
		}
		if c.reads != 1 {
			t.Errorf("mail %d: RCPT TO, BDAT and the next MAIL FROM came in %d reads, want 1", i, c.reads)
		}
		if strings.Contains(msg, "\r\n.\r\n") || !strings.HasSuffix(msg, "\r\n") {
			t.Errorf("mail %d: the chunk holds an ending dot, or does not end with CRLF", i)
		}
		m := smtptest.Parse([]byte(msg))
		if m.ParseErr != nil || smtptest.CodeFrom(m) != code || !strings.Contains(m.HTML, code) {
			t.Errorf("mail %d: the chunk does not parse (%v) or lacks its code", i, m.ParseErr)
		}
		c.reply("250 ok", "250 queued", "250 ok")
		if err := result(t, done); err != nil {
			t.Fatalf("mail %d: Send: %v", i, err)
		}
	}
}

// A message whose lines begin with a dot goes as it is: BDAT has no
// dot-stuffing, and a stuffed dot would reach the reader.
func TestSMTPSenderChunkNotDotStuffed(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t, withTemplate(t, ".{{.Code}}\n..two dots\n."))
	done, c := r.chunkedMail(s, "123456")
	msg := c.joined()
	c.reply("250 ok", "250 queued", "250 ok")
	if err := result(t, done); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !strings.Contains(msg, "\r\n.123456\r\n..two dots\r\n.\r\n") {
		t.Errorf("the text part was changed on the way:\n%s", msg)
	}
}

// Without PIPELINING, BDAT waits for RCPT TO's reply, and no MAIL FROM
// follows it.
func TestSMTPSenderChunksWithoutPipelining(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t)
	done := sendAsync(s, "123456")
	c := r.accept("8BITMIME", "CHUNKING")
	for _, cmd := range []string{"MAIL FROM:", "RCPT TO:"} {
		if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, cmd) {
			t.Fatalf("got %q, want %s", got, cmd)
		}
		c.quiet(300 * time.Millisecond)
		c.reply("250 ok")
	}
	if msg := c.chunk(); !strings.Contains(msg, "123456") {
		t.Error("the chunk lacks the code")
	}
	c.quiet(300 * time.Millisecond)
	c.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// A server holding its replies that stalls past the timeout after a
// RCPT TO sent with the message (a content check, a check of the next
// MAIL FROM sent along, or a recipient slow to check: from here they
// look alike) is taken for the recipient's stall, as at RCPT TO:
// temporary, not the session's, so that tarpit addresses cannot make
// mail look degraded. From then on RCPT TO waits for its reply before
// the message goes, and no MAIL FROM goes with the message; a stall
// after RCPT TO's reply is the session's, as a message's is.
func TestSMTPSenderChunkedHeldRcptThenAlone(t *testing.T) {
	r := startRaw(t)
	s := r.quickSender(t)
	done, c := r.chunkedMail(s, "123456")
	c.lines(1, 5*time.Second) // RCPT TO, then BDAT and the message: no reply
	c.chunk()
	se := sendError(t, result(t, done))
	if !se.Temporary || se.Session {
		t.Errorf("RCPT TO held with the message past the timeout: %+v, want temporary and not the session's", se)
	}

	done, c = r.chunkedMail(s, "234567")
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "RCPT TO:") {
		t.Fatalf("got %q, want RCPT TO", got)
	}
	c.quiet(150 * time.Millisecond) // alone now
	c.reply("250 ok")
	if msg := c.chunk(); !strings.Contains(msg, "234567") {
		t.Error("the chunk lacks the code")
	}
	c.quiet(150 * time.Millisecond)    // and no MAIL FROM with the chunk: it went with the stalled write
	se = sendError(t, result(t, done)) // the message's reply held: the session's
	if !se.Temporary || se.Reply || !se.Session {
		t.Errorf("the chunk's reply held past the timeout: %+v, want temporary, no reply, the session's", se)
	}
	r.ln.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if nc, err := r.ln.Accept(); err == nil {
		nc.Close()
		t.Error("Send dialled again after a timeout")
	}
}

// withTemplate has the sender's text part from text.
func withTemplate(t *testing.T, text string) func(*mailer.Config) {
	t.Helper()
	tmpl, err := mailer.LoadTemplates(writeTemplates(t, map[string]string{"body.txt": text}))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *mailer.Config) { c.Templates = tmpl }
}

// A recipient accepted late, past the timeout, with BDAT sent along
// (against the real server, which reads the chunk once it has answered
// RCPT TO): the send fails as the recipient's stall, yet the server has
// taken the message, and the retry sends it again: the mail arrives
// twice, same code (README's failure table says so).
func TestSMTPSenderChunkedLateRcptDuplicates(t *testing.T) {
	var stalled atomic.Bool
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdRcpt, func(n int, _ string) *smtp.SMTPError {
		if n == 1 {
			stalled.Store(true)
			time.Sleep(800 * time.Millisecond)
		}
		return nil
	}))
	s := newSender(t, srv, func(c *mailer.Config) { c.Timeout = 300 * time.Millisecond })
	se := sendError(t, s.Send(context.Background(), message("ana@example.com", "123456")))
	if !stalled.Load() || !se.Temporary || se.Session {
		t.Errorf("RCPT TO answered past the timeout: %+v, want temporary and not the session's", se)
	}
	if err := s.Send(context.Background(), message("ana@example.com", "123456")); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	got := srv.Wait(t, 2, 5*time.Second)
	if len(got) != 2 || smtptest.CodeFrom(got[0]) != "123456" || smtptest.CodeFrom(got[1]) != "123456" {
		t.Errorf("%d messages, want the same one twice", len(got))
	}
}

// sendCtx is sendAsync with ctx.
func sendCtx(ctx context.Context, s *mailer.SMTPSender, code string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, message("ana@example.com", code)) }()
	return done
}

// The caller's deadline ending first, while RCPT TO waits with the
// message sent along, is as the timeout there: temporary, not the
// session's, and from then on RCPT TO and MAIL FROM go alone.
func TestSMTPSenderChunkedRcptCutByCaller(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t) // a timeout of 5 s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := sendCtx(ctx, s, "123456")
	c := r.accept("PIPELINING", "CHUNKING")
	c.lines(1, 5*time.Second) // MAIL FROM
	c.reply("250 ok")
	c.joined() // no reply: the caller gives up
	cancel()
	se := sendError(t, result(t, done))
	if !se.Temporary || se.Session {
		t.Errorf("RCPT TO cut by the caller: %+v, want temporary and not the session's", se)
	}

	done, c = r.chunkedMail(s, "234567")
	c.lines(1, 5*time.Second) // RCPT TO
	c.quiet(150 * time.Millisecond)
	c.reply("250 ok")
	c.chunk()
	c.quiet(150 * time.Millisecond)
	c.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// The fallback after such a stall lapses: RCPT TO still goes alone 9
// minutes on, and with the chunk again 11 minutes on (fallbackHold is 10
// minutes), so that one tarpit recipient does not cost every later mail
// its round trips for good.
func TestSMTPSenderChunkedFallbackLapses(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	r := startRaw(t)
	s := r.sender(t, func(c *mailer.Config) {
		c.Timeout = 300 * time.Millisecond
		c.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	done, c := r.chunkedMail(s, "123456")
	c.joined()
	if se := sendError(t, result(t, done)); se.Session {
		t.Fatalf("the stall: %+v, want not the session's", se)
	}

	now.Add(int64(9 * time.Minute))
	done, c = r.chunkedMail(s, "234567")
	c.lines(1, 5*time.Second)
	c.quiet(150 * time.Millisecond) // RCPT TO alone
	c.reply("250 ok")
	c.chunk()
	c.quiet(150 * time.Millisecond) // no MAIL FROM along
	c.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("9 minutes on: %v", err)
	}

	now.Add(int64(2 * time.Minute))
	done = sendAsync(s, "345678")
	if got := c.lines(1, 5*time.Second)[0]; got != "QUIT" { // the kept connection, idle too long
		t.Fatalf("got %q, want QUIT", got)
	}
	c.reply("221 bye")
	c = r.accept("PIPELINING", "CHUNKING")
	c.lines(1, 5*time.Second)
	c.reply("250 ok")
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "RCPT TO:") {
		t.Fatalf("got %q, want RCPT TO", got)
	}
	c.chunk()
	if got := c.lines(1, 5*time.Second)[0]; !strings.HasPrefix(got, "MAIL FROM:") || c.reads != 1 {
		t.Fatalf("11 minutes on: %q after the chunk, in %d reads; want RCPT TO, the chunk and MAIL FROM in one", got, c.reads)
	}
	c.reply("250 ok", "250 queued", "250 ok")
	if err := result(t, done); err != nil {
		t.Fatalf("11 minutes on: %v", err)
	}
}

// Each reply has the whole timeout, from the reply before it: a server
// taking most of it at each step, never all, delivers; a recipient
// answering just inside its time leaves the message its own.
func TestSMTPSenderEachReplyHasItsTimeout(t *testing.T) {
	const slow = 900 * time.Millisecond // of 1.5 s
	for name, ext := range map[string][]string{
		"BDAT pipelined": {"PIPELINING", "CHUNKING"},
		"DATA pipelined": {"PIPELINING"},
		"one at a time":  {"8BITMIME"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := startRaw(t)
			s := r.sender(t, func(c *mailer.Config) { c.Timeout = 1500 * time.Millisecond })
			done := sendAsync(s, "123456")
			c := r.accept(ext...)
			later := func(lines ...string) { time.Sleep(slow); c.reply(lines...) }
			c.lines(1, 5*time.Second) // MAIL FROM
			later("250 ok")
			switch name {
			case "BDAT pipelined":
				c.joined()
				later("250 ok")
				later("250 queued", "250 ok")
			case "DATA pipelined":
				c.lines(2, 5*time.Second) // RCPT TO, DATA
				later("250 ok")
				later("354 go ahead")
				c.data()
				c.lines(1, 5*time.Second)
				later("250 queued", "250 ok")
			default:
				c.lines(1, 5*time.Second)
				later("250 ok")
				c.lines(1, 5*time.Second)
				later("354 go ahead")
				c.data()
				later("250 queued")
			}
			if err := result(t, done); err != nil {
				t.Fatalf("Send: %v", err)
			}
		})
	}
}

// A recipient refused with the chunk sent along: the server answers RCPT
// TO 550, BDAT 554 (no valid recipients) and the next MAIL FROM 250. The
// send fails as the recipient's refusal (permanent, answered, not the
// session's), the connection is dropped unused, and the next mail goes
// on a new one.
func TestSMTPSenderChunkedRcptRefused(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t)
	done, c := r.chunkedMail(s, "123456")
	c.joined()
	c.reply("550 5.1.1 no such user", "554 5.5.1 no valid recipients", "250 ok")
	se := sendError(t, result(t, done))
	if se.Temporary || !se.Reply || se.Session {
		t.Errorf("RCPT TO refused: %+v, want permanent, answered, not the session's", se)
	}
	c.hungUp()

	done, c = r.chunkedMail(s, "234567")
	if msg := c.joined(); !strings.Contains(msg, "234567") {
		t.Error("the chunk lacks the code")
	}
	c.reply("250 ok", "250 queued", "250 ok")
	if err := result(t, done); err != nil {
		t.Fatalf("the next mail: %v", err)
	}
}

// A kept chunked connection the server closed with a 421, at the MAIL
// FROM that went ahead or at the RCPT TO after it (the chunk sent
// along): the mail goes again on a new connection, and arrives there.
func TestSMTPSenderChunkedKeptConnection421(t *testing.T) {
	for _, at := range []string{"MAIL FROM", "RCPT TO"} {
		t.Run(at, func(t *testing.T) {
			r := startRaw(t)
			s := r.sender(t)
			done, c := r.chunkedMail(s, "123456")
			c.joined()
			if at == "MAIL FROM" {
				c.reply("250 ok", "250 queued", "421 4.3.2 shutting down")
				c.c.Close()
			} else {
				c.reply("250 ok", "250 queued", "250 ok")
			}
			if err := result(t, done); err != nil {
				t.Fatalf("first mail: %v", err)
			}

			done = sendAsync(s, "234567")
			if at == "RCPT TO" {
				c.joined()
				c.reply("421 4.3.2 shutting down")
				c.c.Close()
			}
			c = r.accept("PIPELINING", "CHUNKING")
			c.lines(1, 5*time.Second)
			c.reply("250 ok")
			if msg := c.joined(); !strings.Contains(msg, "234567") {
				t.Error("the chunk on the new connection lacks the code")
			}
			c.reply("250 ok", "250 queued", "250 ok")
			if err := result(t, done); err != nil {
				t.Fatalf("after the 421: %v", err)
			}
		})
	}
}

// The caller giving up while the message's reply, with the next MAIL
// FROM sent after it, is held (a check of that MAIL FROM) is as the
// timeout there: MAIL FROM goes alone from then on.
func TestSMTPSenderMessageCutByCallerThenMailFromAlone(t *testing.T) {
	r := startRaw(t)
	s := r.sender(t) // a timeout of 5 s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := sendCtx(ctx, s, "123456")
	c := r.accept("PIPELINING", "8BITMIME")
	c.firstMessage()
	c.lines(1, 5*time.Second) // the next MAIL FROM, with the dot: no reply
	cancel()
	if se := sendError(t, result(t, done)); !se.Temporary || !se.Session {
		t.Errorf("the message's reply cut by the caller: %+v, want temporary and the session's", se)
	}
	r.mailAlone(t, s)
}

// A stall that a fallback isolates renews it while it holds: with RCPT
// TO alone, a message held past the timeout 9 minutes on keeps RCPT TO
// and MAIL FROM alone 11 minutes after the first stall.
func TestSMTPSenderChunkedFallbackRenewed(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	r := startRaw(t)
	s := r.sender(t, func(c *mailer.Config) {
		c.Timeout = 300 * time.Millisecond
		c.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	done, c := r.chunkedMail(s, "123456")
	c.joined() // no reply: RCPT TO and MAIL FROM alone from now
	sendError(t, result(t, done))

	now.Add(int64(9 * time.Minute))
	done, c = r.chunkedMail(s, "234567")
	c.lines(1, 5*time.Second)
	c.reply("250 ok")
	c.chunk() // the message's reply held past the timeout
	if se := sendError(t, result(t, done)); !se.Session {
		t.Errorf("the message held with RCPT TO alone: %+v, want the session's", se)
	}

	now.Add(int64(2 * time.Minute))
	done, c = r.chunkedMail(s, "345678")
	c.lines(1, 5*time.Second)
	c.quiet(150 * time.Millisecond) // RCPT TO still alone: renewed 2 minutes ago
	c.reply("250 ok")
	c.chunk()
	c.quiet(150 * time.Millisecond) // and MAIL FROM, renewed by the same stall
	c.reply("250 queued")
	if err := result(t, done); err != nil {
		t.Fatalf("11 minutes on: %v", err)
	}
}
