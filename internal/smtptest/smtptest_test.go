package smtptest_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/authd/authd/internal/smtptest"
)

// A multipart/alternative message as mail clients send it: base64 text,
// quoted-printable HTML, an RFC 2047 subject.
const multipartMessage = "From: Auth <info@example.com>\r\n" +
	"To: ana@example.com\r\n" +
	"Subject: =?UTF-8?q?Code_f=C3=BCr_Shop?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"WW91ciBjb2RlIGlzIDEyMzQ1Ni4gSXQgZXhwaXJl\r\ncyBpbiA1IG1pbnV0ZXMu\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"<p style=3D\"x\">Your code is <b>123456</b>. A long line that is soft-=\r\nwrapped.</p>\r\n" +
	"--b1--\r\n"

func send(t *testing.T, s *smtptest.Server, auth sasl.Client, msg string) error {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	return c.SendMail("info@example.com", []string{"ana@example.com"}, strings.NewReader(msg))
}

func TestParse(t *testing.T) {
	s := smtptest.Start(t)
	if err := send(t, s, nil, multipartMessage); err != nil {
		t.Fatalf("send: %v", err)
	}
	m := s.Wait(t, 1, 5*time.Second)[0]
	if m.ParseErr != nil {
		t.Fatalf("parse: %v", m.ParseErr)
	}
	checks := []struct{ name, got, want string }{
		{"envelope from", m.From, "info@example.com"},
		{"envelope to", strings.Join(m.To, ","), "ana@example.com"},
		{"subject", m.Subject, "Code für Shop"},
		{"raw to header", m.Header.Get("To"), "ana@example.com"},
		{"text", m.Text, "Your code is 123456. It expires in 5 minutes."},
		{"html", m.HTML, "<p style=\"x\">Your code is <b>123456</b>. A long line that is soft-wrapped.</p>"},
		{"code", smtptest.CodeFrom(m), "123456"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !strings.Contains(string(m.Data), "Content-Transfer-Encoding: base64") {
		t.Errorf("Data is not the raw message")
	}
}

// WithHandler: each message goes to the handler, parsed, and none is kept.
func TestHandler(t *testing.T) {
	got := make(chan smtptest.Message, 1)
	s := smtptest.Start(t, smtptest.WithHandler(func(m smtptest.Message) { got <- m }))
	if err := send(t, s, nil, multipartMessage); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case m := <-got:
		if smtptest.CodeFrom(m) != "123456" || m.To[0] != "ana@example.com" {
			t.Fatalf("handler got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not called")
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages kept, want none", n)
	}
}

func TestCodeFrom(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"code: 012345.", "012345"},
		{"123456", "123456"},
		{"valid 5 minutes, code 654321", "654321"},
		{"1234567 is too long, 12345 too short", ""},
		{"", ""},
	} {
		if got := smtptest.CodeFrom(smtptest.Message{Text: tc.text}); got != tc.want {
			t.Errorf("CodeFrom(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestAuth(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithAuth("user", "secret"))
	msg := "Subject: x\r\n\r\nbody 111111\r\n"

	var se *smtp.SMTPError
	if err := send(t, s, nil, msg); !errors.As(err, &se) || se.Code != 502 {
		t.Errorf("send without AUTH: %v, want 502", err)
	}
	if err := send(t, s, sasl.NewPlainClient("", "user", "wrong"), msg); !errors.As(err, &se) || se.Code != 535 {
		t.Errorf("AUTH with a wrong password: %v, want 535", err)
	}
	if err := send(t, s, sasl.NewPlainClient("", "user", "secret"), msg); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if got := s.Wait(t, 1, 5*time.Second); len(got) != 1 || smtptest.CodeFrom(got[0]) != "111111" {
		t.Errorf("messages = %+v", got)
	}
	if n := s.Connections(); n != 3 {
		t.Errorf("Connections() = %d, want 3", n)
	}
}

func TestReplyScript(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		switch n {
		case 1:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		case 2:
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
		}
		return nil
	}))
	msg := "Subject: x\r\n\r\nbody\r\n"
	for i, want := range []int{451, 554, 0} {
		err := send(t, s, nil, msg)
		var se *smtp.SMTPError
		switch {
		case want == 0 && err != nil:
			t.Errorf("attempt %d: %v, want success", i+1, err)
		case want != 0 && (!errors.As(err, &se) || se.Code != want):
			t.Errorf("attempt %d: %v, want %d", i+1, err, want)
		}
	}
	if n, a := len(s.Messages()), s.Attempts(); n != 1 || a != 3 {
		t.Errorf("kept %d of %d attempts, want 1 of 3", n, a)
	}
}

// TestCommandReply: MAIL FROM and RCPT TO answer as scripted, per
// command and argument; a hang-up closes the connection without a word.
func TestCommandReply(t *testing.T) {
	s := smtptest.Start(t,
		smtptest.WithCommandReply(smtptest.CmdMail, func(n int, from string) *smtp.SMTPError {
			if n == 1 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
			}
			if from == "banned@example.com" {
				return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
			}
			return nil
		}),
		smtptest.WithCommandReply(smtptest.CmdRcpt, func(n int, to string) *smtp.SMTPError {
			switch {
			case strings.HasPrefix(to, "nobody@"):
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			case strings.HasPrefix(to, "crash@"):
				return smtptest.Hangup
			}
			return nil
		}))
	msg := "Subject: x\r\n\r\nbody\r\n"
	sendFrom := func(from, to string) error {
		t.Helper()
		c, err := smtp.Dial(s.Addr())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		return c.SendMail(from, []string{to}, strings.NewReader(msg))
	}
	for i, tc := range []struct {
		from, to string
		want     int // reply code; 0 success, -1 no reply at all
	}{
		{"info@example.com", "ana@example.com", 451},
		{"banned@example.com", "ana@example.com", 553},
		{"info@example.com", "nobody@example.com", 550},
		{"info@example.com", "crash@example.com", -1},
		{"info@example.com", "ana@example.com", 0},
	} {
		err := sendFrom(tc.from, tc.to)
		var se *smtp.SMTPError
		switch {
		case tc.want == 0 && err != nil:
			t.Errorf("send %d: %v, want success", i+1, err)
		case tc.want > 0 && (!errors.As(err, &se) || se.Code != tc.want):
			t.Errorf("send %d: %v, want %d", i+1, err, tc.want)
		case tc.want < 0 && (err == nil || errors.As(err, &se)):
			t.Errorf("send %d: %v, want the connection closed without a reply", i+1, err)
		}
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages kept, want 1", n)
	}
	for cmd, want := range map[smtptest.Command]int{smtptest.CmdMail: 5, smtptest.CmdRcpt: 3, smtptest.CmdData: 1} {
		if n := s.Commands(cmd); n != want {
			t.Errorf("Commands(%s) = %d, want %d", cmd, n, want)
		}
	}
}

func TestStartTLS(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithTLS(), smtptest.WithAuth("u", "p"))
	c, err := smtp.DialStartTLS(s.Addr(), s.ClientTLSConfig())
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("no TLS after STARTTLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: t\r\n\r\n222222\r\n")); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.Wait(t, 1, 5*time.Second)
}

// TestTLSRequired: in plain text the server offers no AUTH and takes no
// MAIL FROM; after STARTTLS it does.
func TestTLSRequired(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithTLSRequired(), smtptest.WithAuth("u", "p"))
	plain, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer plain.Close()
	if err := plain.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := plain.Extension("AUTH"); ok {
		t.Error("AUTH offered in plain text")
	}
	var se *smtp.SMTPError
	if err := plain.Mail("a@example.com", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Errorf("MAIL FROM in plain text: %v, want 530", err)
	}
	c, err := smtp.DialStartTLS(s.Addr(), s.ClientTLSConfig())
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: t\r\n\r\n444444\r\n")); err != nil {
		t.Fatalf("send after STARTTLS: %v", err)
	}
	s.Wait(t, 1, 5*time.Second)
}

func TestImplicitTLS(t *testing.T) {
	s := smtptest.Start(t, smtptest.WithImplicitTLS())
	c, err := smtp.DialTLS(s.Addr(), s.ClientTLSConfig())
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	defer c.Close()
	if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: t\r\n\r\n333333\r\n")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if m := s.Wait(t, 1, 5*time.Second)[0]; smtptest.CodeFrom(m) != "333333" {
		t.Errorf("text = %q", m.Text)
	}
}

func TestCloseRefuses(t *testing.T) {
	s := smtptest.Start(t)
	s.Close()
	if c, err := smtp.Dial(s.Addr()); err == nil {
		c.Close()
		t.Fatal("dial after Close succeeded")
	}
	s.Close() // idempotent
}

// go-smtp offers CHUNKING; WithoutChunking's server does not, and offers
// all else as before, and a message still arrives whole.
func TestWithoutChunking(t *testing.T) {
	for _, tc := range []struct {
		opts     []smtptest.Option
		chunking bool
	}{{nil, true}, {[]smtptest.Option{smtptest.WithoutChunking()}, false}} {
		s := smtptest.Start(t, tc.opts...)
		c, err := smtp.Dial(s.Addr())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("CHUNKING"); ok != tc.chunking {
			t.Errorf("CHUNKING offered: %v, want %v", ok, tc.chunking)
		}
		if ok, _ := c.Extension("PIPELINING"); !ok {
			t.Error("PIPELINING not offered")
		}
		if err := c.SendMail("info@example.com", []string{"ana@example.com"}, strings.NewReader(multipartMessage)); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
		c.Quit()
		if got := s.Wait(t, 1, 5*time.Second); got[0].Text == "" {
			t.Error("the message arrived without its text")
		}
	}
}
