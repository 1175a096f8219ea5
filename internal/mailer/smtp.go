package mailer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/authd/authd"
)

// Config is an SMTP relay and the sender identity (SMTP_* and EMAILS_FROM_*).
type Config struct {
	Host string
	Port int // default 587

	// Username turns on AUTH (PLAIN, or LOGIN when the server offers only
	// that); without it no AUTH is attempted.
	Username, Password string

	// TLS requires STARTTLS: a server that does not offer it, or whose
	// certificate does not verify, fails the send; there is no silent
	// downgrade to plain text. With Port 465 (or ImplicitTLS) TLS is
	// implicit (SMTPS) instead. TLS false is plain SMTP, for a local relay
	// or a mail catcher; credentials then travel in clear, as configured.
	TLS         bool
	ImplicitTLS bool // implicit TLS on a port other than 465; needs TLS

	From     string // EMAILS_FROM_EMAIL: the envelope and header sender
	FromName string // EMAILS_FROM_NAME

	// Timeout bounds connecting (TCP, greeting, EHLO, STARTTLS, AUTH) and,
	// separately, each message's commands on an open connection.
	// Default 10s.
	Timeout time.Duration

	// TLSConfig is cloned; its ServerName defaults to Host. Tests pass
	// one trusting their own certificate.
	TLSConfig *tls.Config

	// MaxIdle is how many open connections are kept for reuse between
	// messages (default 16, one per Pool worker); negative means one
	// connection per message. IdleTimeout closes a kept connection unused
	// for longer, before the server drops it (default 30s).
	MaxIdle     int
	IdleTimeout time.Duration

	HELO      string     // the EHLO name; default the host name
	Templates *Templates // nil: the embedded templates
	Now       func() time.Time
}

// SMTPSender delivers mail over SMTP with go-mail. Send is safe for
// concurrent use: each call takes an idle connection or dials a new one,
// and gives it back for the next message when the delivery succeeded.
type SMTPSender struct {
	cfg         Config
	implicitTLS bool
	tlsConfig   *tls.Config // nil for plain SMTP
	from        netmail.Address
	fromDomain  string // for Message-IDs
	helo        string
	templates   *Templates
	now         func() time.Time

	mu     sync.Mutex
	idle   []*smtpConn // most recently used last
	closed bool
}

var _ authd.Sender = (*SMTPSender)(nil)

// smtpConn is one open, authenticated SMTP session. Each has its own
// go-mail Client, which then only holds this session's settings: go-mail's
// Client keeps per-connection state (its auth type, its default session)
// that is not meant to be shared across goroutines.
type smtpConn struct {
	mc        *mail.Client
	c         *smtp.Client
	raw       net.Conn // the TCP connection under any TLS, to cut on cancel
	idleSince time.Time
}

// NewSMTPSender checks cfg and returns a sender; it does not connect.
func NewSMTPSender(cfg Config) (*SMTPSender, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: no host")
	}
	if cfg.Port == 0 {
		cfg.Port = 587
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("smtp: port %d out of range", cfg.Port)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 16
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.ImplicitTLS && !cfg.TLS {
		return nil, errors.New("smtp: implicit TLS needs TLS")
	}
	s := &SMTPSender{
		cfg:         cfg,
		implicitTLS: cfg.TLS && (cfg.ImplicitTLS || cfg.Port == 465),
		templates:   cfg.Templates,
		now:         cfg.Now,
		helo:        cfg.HELO,
	}
	if s.templates == nil {
		s.templates = DefaultTemplates()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.helo == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		s.helo = h
	}

	addr, err := netmail.ParseAddress(cfg.From)
	if err != nil || addr.Name != "" {
		return nil, errors.New("smtp: the from address is not a plain address")
	}
	ascii, err := authd.ASCIIEmail(addr.Address)
	if err != nil {
		return nil, errors.New("smtp: the from address has an invalid domain")
	}
	s.from = netmail.Address{Name: headerText(cfg.FromName), Address: ascii}
	s.fromDomain = ascii[strings.LastIndexByte(ascii, '@')+1:]

	if cfg.TLS {
		tc := &tls.Config{}
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = cfg.Host
		}
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		s.tlsConfig = tc
	}
	return s, nil
}

// Send delivers m to its address with the domain in punycode.
//
// Errors: a *authd.SendError, Temporary for connection failures, timeouts,
// cancellation and 4xx replies, permanent for 5xx replies and for
// configuration failures that a retry cannot fix (no STARTTLS on the server,
// an untrusted certificate, no usable AUTH mechanism). Error texts name the
// address masked and never hold the code or the password.
func (s *SMTPSender) Send(ctx context.Context, m authd.Message) error {
	to, err := authd.ASCIIEmail(m.To)
	if err != nil {
		return &authd.SendError{Err: errors.New("smtp: the recipient is not a valid address")}
	}
	msg, err := s.message(m, to)
	if err != nil {
		return &authd.SendError{Err: err}
	}
	fail := func(err error) error {
		return &authd.SendError{
			Temporary: ctx.Err() != nil || temporary(err),
			Err:       &redactedError{msg: "smtp: " + authd.Redact(err.Error(), m.Code, m.To, to), err: err},
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	for {
		c, reused, err := s.get(ctx)
		if err != nil {
			return fail(err)
		}
		alive, err := s.sendOn(ctx, c, msg)
		if err == nil && alive {
			s.put(c)
			return nil
		}
		// After a failure the session's state is unknown, and a QUIT to a
		// stuck server would wait: drop the connection.
		c.raw.Close()
		if err == nil {
			// Sent, but ctx ended as it finished and the connection went
			// with it: the message is delivered.
			return nil
		}
		// A kept connection the server has since dropped fails at MAIL
		// FROM, before anything was accepted: try once more on a fresh
		// one. A fresh connection's failure is the answer.
		if reused && stale(err) && ctx.Err() == nil {
			continue
		}
		return fail(err)
	}
}

// message builds the mail for m: multipart/alternative text and HTML.
func (s *SMTPSender) message(m authd.Message, to string) (*mail.Msg, error) {
	r, err := s.templates.Render(m)
	if err != nil {
		return nil, fmt.Errorf("smtp: render: %w", err)
	}
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	from := s.from
	msg.FromMailAddress(&from)
	if err := msg.To(to); err != nil {
		return nil, errors.New("smtp: the recipient is not a valid address")
	}
	msg.Subject(r.Subject)
	msg.SetMessageIDWithValue(strings.ToLower(rand.Text()) + "@" + s.fromDomain)
	msg.SetDateWithValue(s.now())
	// RFC 3834: an automatic message; vacation responders stay quiet.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader("X-Auto-Response-Suppress", "All")
	msg.SetBodyString(mail.TypeTextPlain, r.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, r.HTML)
	return msg, nil
}

// sendOn sends msg on c. alive is false when ctx ended during the send and
// took the connection down.
func (s *SMTPSender) sendOn(ctx context.Context, c *smtpConn, msg *mail.Msg) (alive bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	err = c.mc.SendWithSMTPClient(c.c, msg)
	return stop(), err
}

// get returns a kept connection (reused true) or dials a new one.
func (s *SMTPSender) get(ctx context.Context) (c *smtpConn, reused bool, err error) {
	now := s.now()
	var expired []*smtpConn
	s.mu.Lock()
	for len(s.idle) > 0 {
		last := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(last.idleSince) > s.cfg.IdleTimeout {
			expired = append(expired, last)
			continue
		}
		c = last
		break
	}
	s.mu.Unlock()
	for _, e := range expired {
		e.close()
	}
	if c != nil {
		return c, true, nil
	}
	c, err = s.dial(ctx)
	return c, false, err
}

// put keeps c for the next message, or closes it when enough are kept.
func (s *SMTPSender) put(c *smtpConn) {
	c.idleSince = s.now()
	s.mu.Lock()
	if !s.closed && len(s.idle) < s.cfg.MaxIdle {
		s.idle = append(s.idle, c)
		c = nil
	}
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// Close closes the kept connections. Sends after Close still work, one
// connection per message.
func (s *SMTPSender) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	return nil
}

// dial opens, greets, secures and authenticates a new connection. The dial
// is bounded by Timeout and by ctx: a cancel closes the socket even during
// EHLO, STARTTLS or AUTH, where go-mail only watches its deadline.
func (s *SMTPSender) dial(ctx context.Context) (*smtpConn, error) {
	var (
		mu        sync.Mutex
		raw       net.Conn
		cancelled bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		cancelled = true
		if raw != nil {
			raw.Close()
		}
	})
	defer stop()
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		raw = conn
		gone := cancelled
		mu.Unlock()
		if gone {
			conn.Close()
			return nil, context.Cause(ctx)
		}
		if !s.implicitTLS {
			return conn, nil
		}
		tc := tls.Client(conn, s.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}

	opts := []mail.Option{
		mail.WithPort(s.cfg.Port),
		mail.WithTimeout(s.cfg.Timeout),
		mail.WithHELO(s.helo),
		mail.WithDialContextFunc(dialer),
		// A NOOP before each message costs a round trip; a dead kept
		// connection shows at MAIL FROM instead, and Send redials.
		mail.WithoutNoop(),
		// RSET after a delivered message is a round trip that, failing,
		// would report a delivered message as failed.
		mail.WithoutRset(),
	}
	switch {
	case s.implicitTLS:
		// The dialer does the TLS; go-mail must not try STARTTLS on top.
		opts = append(opts, mail.WithSSL(), mail.WithTLSPolicy(mail.NoTLS))
	case s.tlsConfig != nil:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory), mail.WithTLSConfig(s.tlsConfig))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuthCustom(&plainOrLogin{
			user: s.cfg.Username, pass: s.cfg.Password, host: s.cfg.Host,
			// Plain SMTP with credentials is what SMTP_TLS=false with
			// SMTP_USER asks for; cmd/authd warns about it at start.
			allowUnencrypted: s.tlsConfig == nil,
		}))
	}
	mc, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return nil, err
	}
	c, err := mc.DialToSMTPClientWithContext(ctx)
	mu.Lock()
	conn, gone := raw, cancelled
	mu.Unlock()
	if err != nil || gone {
		// go-mail leaves the socket open when EHLO, STARTTLS or AUTH fail.
		if conn != nil {
			conn.Close()
		}
		if err == nil {
			err = context.Cause(ctx)
		}
		return nil, err
	}
	return &smtpConn{mc: mc, c: c, raw: conn}, nil
}

// close ends the session politely when the server still listens, within a
// second, and closes the socket in any case.
func (c *smtpConn) close() {
	if c.c.HasConnection() && c.c.UpdateDeadline(time.Second) == nil {
		_ = c.mc.CloseWithSMTPClient(c.c)
	}
	_ = c.raw.Close()
}

// plainOrLogin authenticates with PLAIN, or LOGIN when the server offers
// only that. One per connection: LOGIN keeps state between steps.
type plainOrLogin struct {
	user, pass, host string
	allowUnencrypted bool
	inner            smtp.Auth
}

var errNoAuthMechanism = errors.New("the server offers neither AUTH PLAIN nor AUTH LOGIN")

func (a *plainOrLogin) Start(si *smtp.ServerInfo) (string, []byte, error) {
	switch {
	case slices.Contains(si.Auth, "PLAIN"):
		a.inner = smtp.PlainAuth("", a.user, a.pass, a.host, a.allowUnencrypted)
	case slices.Contains(si.Auth, "LOGIN"):
		a.inner = smtp.LoginAuth(a.user, a.pass, a.host, a.allowUnencrypted)
	default:
		return "", nil, errNoAuthMechanism
	}
	return a.inner.Start(si)
}

func (a *plainOrLogin) Next(fromServer []byte, more bool) ([]byte, error) {
	return a.inner.Next(fromServer, more)
}

// temporary reports whether a retry may succeed: yes for 4xx replies and
// for connections that failed or timed out; no for 5xx replies, for bad
// messages, and for TLS and AUTH set-ups that will fail the same way again.
func temporary(err error) bool {
	var se *mail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
			return false
		}
		if code := se.ErrorCode(); code >= 400 {
			return code < 500
		}
		// No reply code: the connection broke mid-transaction.
		return true
	}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		return reply.Code < 500
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verification):
		return false
	case errors.Is(err, errNoAuthMechanism), errors.Is(err, smtp.ErrUnencrypted), errors.Is(err, smtp.ErrWrongHostname):
		return false
	case strings.Contains(err.Error(), "does not support STARTTLS"):
		// go-mail v0.8.1 has no sentinel for this; the test of the
		// no-downgrade rule pins the text.
		return false
	}
	return true
}

// stale reports whether err is a kept connection that died while idle: it
// broke, or the server said 421 closing, at the first command.
func stale(err error) bool {
	var se *mail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case mail.ErrConnCheck:
		return true
	case mail.ErrSMTPMailFrom:
		code := se.ErrorCode()
		return code == 0 || code == 421
	}
	return false
}

// redactedError carries a cause whose text has had the address and the code
// taken out; the cause stays reachable with errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
