// Package smtptest runs a real SMTP server over TCP for tests
// (github.com/emersion/go-smtp): the mail senders of authd are tested
// against it, never against a mocked interface alone (DESIGN.md §5).
//
// A Server keeps every accepted message, raw and parsed, and can require
// AUTH PLAIN, offer STARTTLS or implicit TLS with a certificate made in
// memory, answer slowly, or answer MAIL FROM, RCPT TO and the end of DATA
// with scripted replies (or hang up instead).
package smtptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Server is a running SMTP server on 127.0.0.1. It stops when the test that
// started it ends.
type Server struct {
	t    testing.TB // Close reports a server that will not stop through it
	cfg  config
	srv  *smtp.Server
	ln   net.Listener
	cert *testCert
	done chan struct{} // closed when Serve has returned
	stop chan struct{} // closed by Close: cuts delays short

	mu       sync.Mutex
	msgs     []Message
	commands map[Command]int // commands seen, refused ones included
	conns    int             // sessions opened
	open     map[*smtp.Conn]struct{}
	changed  chan struct{} // closed and replaced whenever msgs grows
	closed   bool
}

type config struct {
	user, pass  string
	delay       time.Duration
	replies     map[Command]func(n int, arg string) *smtp.SMTPError
	startTLS    bool
	tlsRequired bool
	implicitTLS bool
	noChunking  bool   // CHUNKING left out of EHLO's reply
	addr        string // where to listen; "" = 127.0.0.1 on a free port
	handler     func(Message)

	// closeTimeout bounds Close's wait for Serve to return: a server that
	// does not stop fails the test instead of hanging it.
	closeTimeout time.Duration
	// beforeServe, if set, runs in the Serve goroutine before Serve: the
	// package's own tests hold Serve back with it to order it after Close.
	beforeServe func()
}

// defaultCloseTimeout is far above the microseconds Serve takes to return
// once its listener is closed, even on a loaded machine under -race.
const defaultCloseTimeout = 10 * time.Second

// Option configures a Server.
type Option func(*config)

// WithAuth makes the server offer AUTH PLAIN (over plain TCP too: tests run
// without TLS) and refuse MAIL FROM until the client has logged in with user
// and pass.
func WithAuth(user, pass string) Option {
	return func(c *config) { c.user, c.pass = user, pass }
}

// WithDelay makes the server wait d after receiving each message before it
// answers the end of DATA: a slow server.
func WithDelay(d time.Duration) Option {
	return func(c *config) { c.delay = d }
}

// Command names a step of the SMTP dialogue a script can answer
// (WithCommandReply) and Commands counts.
type Command string

const (
	CmdMail Command = "MAIL" // MAIL FROM; the script's argument is the sender
	CmdRcpt Command = "RCPT" // RCPT TO; the argument is the recipient
	// CmdData is the end of DATA: the message has been read, and the
	// reply is to it. The argument is "". (go-smtp answers the DATA
	// command itself with 354 before its session sees it, so that one
	// cannot be scripted.)
	CmdData Command = "DATA"
)

// Hangup, returned by a script, makes the server close the connection
// without a reply: a server that crashed or a connection cut mid-command.
var Hangup = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "smtptest: hung up"}

// WithCommandReply scripts the answer to cmd. f is called with the number
// of that command seen, counting from 1 over the server's life (refused
// ones included), and its argument; a non-nil error is sent as the reply
// (Hangup: no reply, the connection is closed), nil lets the command
// proceed. A refused MAIL or RCPT is not part of the transaction; a refused
// message is not kept. For example, RCPT answered 550 for made-up mailboxes:
//
//	smtptest.WithCommandReply(smtptest.CmdRcpt, func(n int, to string) *smtp.SMTPError {
//		if strings.HasPrefix(to, "nobody") {
//			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
//		}
//		return nil
//	})
func WithCommandReply(cmd Command, f func(n int, arg string) *smtp.SMTPError) Option {
	return func(c *config) {
		if c.replies == nil {
			c.replies = make(map[Command]func(int, string) *smtp.SMTPError)
		}
		c.replies[cmd] = f
	}
}

// WithReply scripts the answer to each message (the end of DATA): it is
// WithCommandReply(CmdData, ...) for a script that needs only n, the
// number of the message offered. For example, 451 for the first two
// attempts:
//
//	smtptest.WithReply(func(n int) *smtp.SMTPError {
//		if n <= 2 {
//			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
//		}
//		return nil
//	})
func WithReply(f func(n int) *smtp.SMTPError) Option {
	return WithCommandReply(CmdData, func(n int, _ string) *smtp.SMTPError { return f(n) })
}

// WithTLS makes the server offer STARTTLS with a self-signed certificate
// for 127.0.0.1 and localhost; clients trust it through CertPool or
// ClientTLSConfig.
func WithTLS() Option {
	return func(c *config) { c.startTLS = true }
}

// WithTLSRequired is WithTLS on a server that, as submission servers
// commonly are, is closed to plain text: it offers AUTH only after
// STARTTLS and answers MAIL FROM before it 530 5.7.0. A client set up for
// plain SMTP (SMTP_TLS=false) gets nothing through.
func WithTLSRequired() Option {
	return func(c *config) { c.startTLS, c.tlsRequired = true, true }
}

// WithImplicitTLS makes the server speak TLS from the first byte (SMTPS, as
// on port 465) with the same certificate as WithTLS.
func WithImplicitTLS() Option {
	return func(c *config) { c.implicitTLS = true }
}

// WithoutChunking leaves CHUNKING (RFC 3030), which go-smtp always
// offers, out of the server's EHLO reply: a client then sends each
// message with DATA, dot-stuffed, as to a server without BDAT. The reply
// is edited on the wire, so this is for plain text only.
func WithoutChunking() Option {
	return func(c *config) { c.noChunking = true }
}

// WithAddr makes the server listen on addr ("127.0.0.1:port"): a test
// can bring a server back on the port of one it closed, as an SMTP server
// restarting.
func WithAddr(addr string) Option {
	return func(c *config) { c.addr = addr }
}

// WithHandler hands every accepted message to f, on the session's
// goroutine, instead of keeping it: a sink for a long load, whose memory
// stays flat however many messages arrive. Messages then returns none.
func WithHandler(f func(Message)) Option {
	return func(c *config) { c.handler = f }
}

// Start starts a server on 127.0.0.1 on a free port (see WithAddr) and stops it with
// t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		cfg:     config{closeTimeout: defaultCloseTimeout},
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	for _, o := range opts {
		o(&s.cfg)
	}

	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "smtptest.localhost"
	s.srv.AllowInsecureAuth = !s.cfg.tlsRequired
	s.srv.MaxMessageBytes = 1 << 20
	s.srv.MaxRecipients = 50
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	// go-smtp logs dropped connections; a test that closes connections on
	// purpose would fill its output, and t.Log after the test ends panics.
	s.srv.ErrorLog = log.New(io.Discard, "", 0)

	addr := s.cfg.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	if s.cfg.startTLS || s.cfg.implicitTLS {
		s.cert, err = newTestCert()
		if err != nil {
			ln.Close()
			t.Fatalf("smtptest: certificate: %v", err)
		}
		if s.cfg.startTLS {
			s.srv.TLSConfig = s.cert.serverConfig()
		}
		if s.cfg.implicitTLS {
			ln = newTLSListener(ln, s.cert.serverConfig())
		}
	}
	if s.cfg.noChunking {
		if s.cfg.startTLS || s.cfg.implicitTLS {
			ln.Close()
			t.Fatal("smtptest: WithoutChunking edits the EHLO reply on the wire: not with TLS")
		}
		ln = noChunkingListener{ln}
	}
	s.ln = ln

	go func() {
		defer close(s.done)
		if s.cfg.beforeServe != nil {
			s.cfg.beforeServe()
		}
		// Serve returns when Close closes the listener; a test notices any
		// other failure as messages that never arrive.
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the server's "host:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the server's IP address, "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops the server and drops its connections; later connections are
// refused. It is called by t.Cleanup and may be called earlier to test a
// server going away. It returns once the server has stopped accepting; if
// that takes longer than a few seconds it fails the test with every
// goroutine's stack rather than hang it. Later calls only wait likewise.
func (s *Server) Close() {
	s.shutdown()
	s.awaitServe()
}

// shutdown is Close without the wait; it does its work once.
func (s *Server) shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	// go-smtp's Close closes only the listeners Serve has registered, and
	// Serve registers its listener only once its goroutine runs. On a busy
	// machine Close can come first: it would close nothing, and Serve would
	// then block in Accept forever. Closing our listener as well makes that
	// Accept fail whichever runs first; srv.Close has already marked the
	// server done, so Serve then returns. A TLS listener closes the TCP
	// listener it wraps.
	_ = s.srv.Close()
	_ = s.ln.Close()
}

// awaitServe waits for the Serve goroutine to return, at most
// cfg.closeTimeout.
func (s *Server) awaitServe() {
	timer := time.NewTimer(s.cfg.closeTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		// Errorf, not Fatalf: Close may run outside the test's goroutine.
		s.t.Errorf("smtptest: server on %s still serving %v after Close; goroutines:\n%s",
			s.Addr(), s.cfg.closeTimeout, buf)
	}
}

// DropConnections closes every open client connection without a word, as
// a server does with idle connections, and keeps listening: a client that
// kept a connection finds it dead at its next command.
func (s *Server) DropConnections() {
	s.mu.Lock()
	open := make([]*smtp.Conn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Conn().Close()
	}
}

// Messages returns a copy of the messages accepted so far, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Attempts returns how many messages were offered (DATA commands),
// including those refused by a script: Commands(CmdData).
func (s *Server) Attempts() int { return s.Commands(CmdData) }

// Commands returns how many cmd commands clients sent, refused ones
// included; for CmdData, how many messages were offered (Attempts).
func (s *Server) Commands(cmd Command) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands[cmd]
}

// Connections returns how many SMTP sessions clients opened: a sender that
// reuses connections opens fewer sessions than it sends messages.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Wait blocks until at least n messages have been accepted and returns them
// all, or fails t after timeout. It waits on a notification, not a polling
// loop. Call it from the test's goroutine.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return msgs
		}
		got, changed := len(s.msgs), s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("smtptest: %d of %d messages arrived within %v", got, n, timeout)
			return nil
		}
	}
}

// CertPool returns a pool holding the server's certificate, or nil without
// WithTLS or WithImplicitTLS.
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	return s.cert.pool
}

// ClientTLSConfig returns a client configuration that trusts the server's
// certificate for its host, or nil without WithTLS or WithImplicitTLS.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.cert == nil {
		return nil
	}
	return s.cert.clientConfig(s.Host())
}

// count records one cmd and returns how many have been seen.
func (s *Server) count(cmd Command) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commands == nil {
		s.commands = make(map[Command]int)
	}
	s.commands[cmd]++
	return s.commands[cmd]
}

func (s *Server) keep(m Message) {
	if s.cfg.handler != nil {
		s.cfg.handler(m)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

var errClosed = errors.New("smtptest: server closed")

// backend opens one session per connection.
type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	if b.s.closed {
		// A connection accepted just before Close may miss go-smtp's sweep
		// of open connections: end it here so a closed server serves no one.
		b.s.mu.Unlock()
		_ = c.Conn().Close()
		return nil, errClosed
	}
	b.s.conns++
	if b.s.open == nil {
		b.s.open = make(map[*smtp.Conn]struct{})
	}
	b.s.open[c] = struct{}{}
	b.s.mu.Unlock()
	return &session{s: b.s, c: c}, nil
}

// session is one client connection's state.
type session struct {
	s      *Server
	c      *smtp.Conn
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (se *session) AuthMechanisms() []string {
	if se.s.cfg.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.s.cfg.user == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if identity != "" && identity != user {
			return smtp.ErrAuthFailed
		}
		if user != se.s.cfg.user || pass != se.s.cfg.pass {
			return smtp.ErrAuthFailed
		}
		se.authed = true
		return nil
	}), nil
}

// scripted counts cmd and returns the script's answer to it, nil when
// there is none or it lets cmd proceed. For Hangup it closes the
// connection first: go-smtp's reply then goes nowhere, and its read of
// the next command ends the session.
func (se *session) scripted(cmd Command, n int, arg string) error {
	f := se.s.cfg.replies[cmd]
	if f == nil {
		return nil
	}
	e := f(n, arg)
	if e == nil {
		return nil
	}
	if e == Hangup {
		_ = se.c.Conn().Close()
	}
	return e
}

var errTLSRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	n := se.s.count(CmdMail)
	if _, isTLS := se.c.TLSConnectionState(); se.s.cfg.tlsRequired && !isTLS {
		return errTLSRequired
	}
	if se.s.cfg.user != "" && !se.authed {
		return smtp.ErrAuthRequired
	}
	if err := se.scripted(CmdMail, n, from); err != nil {
		return err
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := se.scripted(CmdRcpt, se.s.count(CmdRcpt), to); err != nil {
		return err
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n := se.s.count(CmdData)
	if d := se.s.cfg.delay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-se.s.stop:
			t.Stop()
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "shutting down"}
		}
	}
	if err := se.scripted(CmdData, n, ""); err != nil {
		return err
	}
	se.s.keep(parse(se.from, append([]string(nil), se.to...), data))
	return nil
}

func (se *session) Reset() {
	se.from = ""
	se.to = nil
}

func (se *session) Logout() error {
	se.s.mu.Lock()
	delete(se.s.open, se.c)
	se.s.mu.Unlock()
	return nil
}

// noChunkingListener's connections drop CHUNKING's line from what the
// server writes: go-smtp writes (and flushes) each line of a reply on
// its own.
type noChunkingListener struct{ net.Listener }

func (l noChunkingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return noChunkingConn{c}, nil
}

type noChunkingConn struct{ net.Conn }

func (c noChunkingConn) Write(p []byte) (int, error) {
	if bytes.Equal(p, []byte("250-CHUNKING\r\n")) {
		return len(p), nil
	}
	return c.Conn.Write(p)
}
