package mailer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// separately, the wait for each reply of a message's transaction on
	// an open connection (transact). Default 10s.
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

	HELO      string           // the EHLO name; default the host name
	Templates *Templates       // nil: the embedded templates
	Now       func() time.Time // called from concurrent Sends: must be safe for that
}

// SMTPSender delivers mail over SMTP. go-mail opens the sessions; each
// message is built by buildMessage and its transaction is ours
// (transact), pipelined (RFC 2920) when the server offers PIPELINING. Send is safe for
// concurrent use: each call takes an idle connection or dials a new one,
// and gives it back for the next message when the delivery succeeded.
type SMTPSender struct {
	cfg         Config
	implicitTLS bool
	tlsConfig   *tls.Config // nil for plain SMTP
	from        netmail.Address
	fromHeader  string // its From header line, built once (fromHeader)
	mailFrom    string // its address as MAIL FROM names it: "<addr>"
	fromDomain  string // for Message-IDs
	helo        string
	templates   *Templates
	now         func() time.Time

	mu     sync.Mutex
	idle   []*smtpConn // most recently used last
	closed bool

	// notAhead: until when (Unix ns) MAIL FROM goes alone, not with the
	// last message: a MAIL FROM sent so, or that message, went unanswered
	// past the timeout (transact).
	notAhead atomic.Int64
	// rcptAlone: until when (Unix ns) RCPT TO waits for its reply before
	// the message goes: a RCPT TO sent with the message (BDAT) went
	// unanswered, past the timeout or the caller's deadline (transact).
	rcptAlone atomic.Int64
}

// fallbackHold is how long a fallback of transact's (notAhead,
// rcptAlone) lasts after the stall that set it. A stall sets it again;
// so the fallback holds while stalls keep coming, yet one recipient's
// tarpit, which anyone can ask codes for, does not cost every later mail
// its round trips for the rest of the process's life.
const fallbackHold = 10 * time.Minute

// hold starts (or extends) the fallback f from now.
func (s *SMTPSender) hold(f *atomic.Int64) { f.Store(s.now().Add(fallbackHold).UnixNano()) }

// held reports whether the fallback f holds at now.
func held(f *atomic.Int64, now time.Time) bool { return now.UnixNano() < f.Load() }

var _ authd.Sender = (*SMTPSender)(nil)

// smtpConn is one open, authenticated SMTP session.
type smtpConn struct {
	c         *smtp.Client
	raw       net.Conn // the TCP connection under any TLS, to cut on cancel
	idleSince time.Time
	// plainOffered: the session runs in plain text (SMTP_TLS=false) on a
	// server that offers STARTTLS. Such a server may refuse AUTH or MAIL
	// FROM until it gets TLS; a refusal then points at SMTP_TLS.
	plainOffered bool

	// From the server's EHLO, for each message's transaction:
	pipelining bool   // PIPELINING: RCPT TO and DATA (or BDAT) in one write
	chunking   bool   // CHUNKING: the message as one BDAT chunk, not DATA
	enhanced   bool   // ENHANCEDSTATUSCODES: replies carry one ("5.7.0")
	mailParams string // what go-mail's Client.Mail adds: " BODY=8BITMIME", " SMTPUTF8"

	// opened: the next transaction's MAIL FROM went out with the last
	// message's ending dot, its reply not yet read (transact).
	opened bool
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
	s.fromHeader, s.mailFrom = fromHeader(s.from), "<"+ascii+">"
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

// Send delivers m to its address with the domain in punycode. A mail on a
// kept connection waits for two round trips when the server offers
// PIPELINING: RCPT TO and DATA together, then the message; its MAIL FROM
// went out with the last mail's message, and its reply came with that
// message's (transact). A new connection's first mail waits for MAIL
// FROM too. Without PIPELINING, each command is a round trip.
//
// Errors: a *authd.SendError classified by the step that failed (classify
// has the table): Temporary for 4xx replies, connection failures, timeouts
// and cancellation, permanent for 5xx replies and for set-ups that a retry
// cannot fix (no STARTTLS on the server, an untrusted certificate, no
// usable AUTH mechanism); Reply when the server answered the failing
// command; Session for every step but the recipient's own answer to RCPT
// TO; Setting the variables to check. Error texts name the address masked
// and never hold the code or the password.
func (s *SMTPSender) Send(ctx context.Context, m authd.Message) error {
	to, err := authd.ASCIIEmail(m.To)
	if err != nil || strings.ContainsAny(to, "<>\r\n") {
		// The recipient's own failure, for good: no retry, no setting.
		return &authd.SendError{Err: errors.New("smtp: the recipient is not a valid address")}
	}
	env, err := s.message(m, to)
	if err != nil {
		// The templates fail every mail alike.
		return &authd.SendError{Session: true, Setting: settingTemplates, Err: err}
	}
	fail := func(err error, on *smtpConn) error {
		c := classify(err, on)
		if ctx.Err() != nil {
			// Cut by the caller (its send timeout, a shutdown): the server
			// was slow, not refusing; at RCPT TO, slow on this recipient
			// (see classify).
			c = class{temporary: true, session: !atRcpt(err)}
		}
		text := authd.Redact(err.Error(), m.Code, m.To, to)
		if p := s.cfg.Password; len(p) >= minRedactedPassword {
			text = strings.ReplaceAll(text, p, "[password]")
		}
		return &authd.SendError{
			Temporary: c.temporary, Reply: c.reply, Session: c.session, Setting: c.setting,
			Err: &redactedError{msg: "smtp: " + text, err: err},
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err, nil)
	}
	fresh := false // the retry after a dead kept connection
	for {
		c, reused, err := s.get(ctx, fresh)
		if err != nil {
			return fail(err, nil)
		}
		alive, err := s.sendOn(ctx, c, env)
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
		// A kept connection the server has since dropped fails at its
		// first reply since (stale), before anything was accepted: try
		// once more, on a new connection, not another kept one: a
		// recipient's own 421 at RCPT TO looks the same, and must cost
		// one connection, not every kept one. A new connection's failure
		// is the answer.
		if reused && stale(err) && ctx.Err() == nil {
			fresh = true
			continue
		}
		return fail(err, c)
	}
}

// envelope is a mail as it goes after DATA (buildMessage) and the
// addresses its transaction names, in angle brackets.
type envelope struct {
	data     []byte
	from, to string
}

// message builds the mail for m to the ASCII address to.
func (s *SMTPSender) message(m authd.Message, to string) (envelope, error) {
	data, err := s.buildMessage(m, to)
	if err != nil {
		return envelope{}, err
	}
	return envelope{data: data, from: s.mailFrom, to: "<" + to + ">"}, nil
}

// sendOn sends env on c (transact). alive is false when ctx ended during
// the send and took the connection down.
func (s *SMTPSender) sendOn(ctx context.Context, c *smtpConn, env envelope) (alive bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	err = s.transact(c, env)
	alive = stop()
	var st *stageError
	if !alive && errors.As(err, &st) {
		// Cut by the caller while a step waited: as a timeout there.
		s.stalled(st)
	}
	return alive, err
}

// transact runs one mail transaction on c: MAIL FROM, RCPT TO, then the
// message, each failure tagged with its step (stageError). The message
// goes as DATA, its 354 and the message dot-stuffed; or, when the server
// offered CHUNKING (RFC 3030), as one BDAT chunk with its size: no
// dot-stuffing and no 354 to wait for. When the server offered
// PIPELINING (RFC 2920), the commands that need not wait for a reply go
// out in one write and their replies are read after it, in order; without
// it each command waits for its reply. One loop does every mode, so that
// they cannot drift apart.
//
// With PIPELINING, RCPT TO and DATA go out in one write after MAIL
// FROM's reply, then the message after DATA's 354: two round trips a
// mail. With CHUNKING too, RCPT TO and the BDAT chunk go in one write:
// one round trip. And the next mail's MAIL FROM (the same for every mail
// of a connection) goes out with the message, as RFC 2920 §3.1 allows,
// when the connection is to be kept; its reply is read when the
// connection is next used (c.opened), and has come with the message's.
// (Sent after the message's reply instead, MAIL FROM's would be a round
// trip away when the next mail comes at once, as under load.) The
// message's outcome is its own reply (the dot's or BDAT's), read here.
// The costs:
//   - A server holding its replies (Postfix, Exim) answers the message
//     once it has checked MAIL FROM too (a milter on the sender). MAIL
//     FROM names no recipient, and a stall there is the session's, as
//     the message's; but when it outlasts the timeout, a message the
//     server had taken is retried and arrives twice, as after a
//     connection cut at the dot. After one such timeout the sender sends
//     MAIL FROM alone (notAhead), for fallbackHold after the last.
//   - A server that offers PIPELINING and yet drops what follows the
//     message leaves MAIL FROM unanswered: so too after one such timeout.
//   - A connection closed unused (idle too long, or at Close) had one
//     MAIL FROM that no message followed.
//   - With CHUNKING, a server holding its replies answers RCPT TO only
//     once it has taken the message too (its content checks): a stall
//     there outlasting the timeout (or the caller's deadline) looks like
//     a recipient slow to check (below), and is taken for one: the mail
//     is retried, not counted against the session. So does a stall on the
//     next mail's MAIL FROM, sent along too. The sender then sends RCPT TO
//     alone (rcptAlone), and MAIL FROM alone when it went along
//     (notAhead), for fallbackHold after the last such stall, so that the
//     retry, and every mail after, tells them apart: a stall at RCPT TO
//     alone is the recipient's, one after it the session's. A recipient
//     refused at RCPT TO leaves the chunk without a recipient, which the
//     server discards (RFC 3030 §2), and the refusal ends the
//     transaction here. But one accepted late, past the timeout (a slow
//     callout, a tarpit), has its chunk there already: the server takes
//     the message after authd has hung up, and the retry sends it again,
//     a duplicate (same code), as after a cut at the dot.
//
// A transaction's own MAIL FROM is never in its RCPT TO's write: a
// pipelining server may hold its replies until it must wait for input
// (Postfix and Exim do), so with MAIL FROM there a recipient slow to
// check (a callout, a tarpit) would keep MAIL FROM's reply back too,
// and a wait past the deadline could not be told from a server stalled
// on every mail: the first is the recipient's (it must not make mail
// look degraded: anyone can ask codes for tarpit addresses), the second
// the session's. MAIL FROM is answered before anything of the recipient
// is known, and its reply is read before RCPT TO goes out.
//
// There is no NOOP before the transaction: it costs a round trip, and a
// dead kept connection shows at the first reply read instead, MAIL
// FROM's, or RCPT TO's when MAIL FROM's came before the server dropped
// the connection (stale), where Send redials. Nor RSET after it: a
// round trip that, failing, would report a delivered message as failed.
// Nor after a refusal: Send then drops the connection.
func (s *SMTPSender) transact(c *smtpConn, env envelope) error {
	// Timeout bounds the wait for each reply, from the reply before it
	// (or from here, for the first): MAIL FROM's, RCPT TO's, DATA's 354,
	// the message's. A recipient answering just inside its timeout leaves
	// the message its own, and a slow MAIL FROM does not eat into the
	// recipient's time: a wait past the timeout is the step's own, as
	// classify tells whose it is. (The caller's deadline still bounds the
	// whole: its cut at RCPT TO after slow earlier steps is taken for the
	// recipient's, as it always was.)
	if err := c.raw.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
		return &stageError{stage: stageMail, err: err}
	}
	t := c.c.Text
	ahead := c.opened // MAIL FROM went out with the last message
	c.opened = false
	now := s.now()
	next := c.pipelining && s.cfg.MaxIdle > 0 && !held(&s.notAhead, now) // MaxIdle: to be kept (put)
	type step struct {
		stage stage
		line  string // the command; "" for the message itself
		code  int    // expected, as textproto.Reader.ReadResponse takes it
		join  bool   // goes out in the write before it (PIPELINING)
	}
	withRcpt := c.chunking && c.pipelining && !held(&s.rcptAlone, now) // the message goes in RCPT TO's write
	var buf [4]step
	steps := append(buf[:0],
		step{stageMail, "MAIL FROM:" + env.from + c.mailParams, 250, false},
		step{stageRcpt, "RCPT TO:" + env.to, 25, false}) // 250 or 251
	if c.chunking {
		// BDAT carries the message: no DATA, no 354.
		steps = append(steps, step{stageMessage, "", 250, withRcpt})
	} else {
		steps = append(steps, step{stageData, "DATA", 354, c.pipelining}, step{stageMessage, "", 250, false})
	}
	fail := func(st stage, err error) error {
		// withMessage: RCPT TO went unanswered with the message sent along.
		withMessage := withRcpt && st == stageRcpt && replyCode(err) == 0
		e := &stageError{stage: st, err: err, ahead: ahead, withMessage: withMessage, next: next}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stalled(e)
		}
		return e
	}
	written := 0 // steps flushed to the server so far
	if ahead {
		written = 1
	}
	for i, st := range steps {
		if i == written {
			for written < len(steps) && (written == i || steps[written].join) {
				if line := steps[written].line; line != "" {
					t.W.WriteString(line)
					t.W.WriteString("\r\n")
				} else {
					writeMessage(t.W, env.data, c.chunking)
					if next {
						t.W.WriteString(steps[0].line)
						t.W.WriteString("\r\n")
					}
				}
				written++
			}
			// A failed write is the first unanswered step's: at MAIL
			// FROM, or at RCPT TO after MAIL FROM went ahead, a kept
			// connection the server has dropped (stale).
			if err := t.W.Flush(); err != nil {
				return fail(st.stage, err)
			}
		}
		// The first refusal ends the transaction; the later replies are
		// not read. A pipelining server that refused RCPT TO still gets
		// DATA, and may even answer it 354; the message is never sent
		// then: Send closes the connection, and a server acts on a
		// transaction only at its ending dot (RFC 5321 §4.1.1.4), so one
		// cut before it is discarded. (With BDAT it got the message, and
		// has no recipient to give it to.)
		if _, _, err := t.ReadResponse(st.code); err != nil {
			return fail(st.stage, err)
		}
		if i < len(steps)-1 {
			// The next wait starts now (above); a failure here is the next
			// step's, this one has its reply.
			if err := c.raw.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
				return fail(steps[i+1].stage, err)
			}
		}
	}
	c.opened = next
	return nil
}

// stalled starts or renews transact's fallbacks after e, a step that
// went unanswered past the timeout or the caller's deadline:
//   - the MAIL FROM sent ahead, or a message with the next MAIL FROM
//     after it: MAIL FROM goes alone (notAhead), no more duplicates so;
//   - a RCPT TO sent with the message (withMessage): the server may have
//     held it on the message's checks or, when the next MAIL FROM went
//     along too, on that one's (a server holding its replies answers
//     none of a write before it has checked all of it). RCPT TO, and
//     MAIL FROM when it went along, go alone: the retry then shows whose
//     the stall was;
//   - a stall a fallback isolates, while it holds (the message after
//     RCPT TO's reply, MAIL FROM or the message with MAIL FROM alone):
//     that fallback is renewed, so that it holds while the stalls last.
func (s *SMTPSender) stalled(e *stageError) {
	now := s.now()
	switch {
	case e.withMessage:
		s.hold(&s.rcptAlone)
		if e.next {
			s.hold(&s.notAhead)
		}
	case e.ahead && e.stage == stageMail, e.next && e.stage == stageMessage:
		s.hold(&s.notAhead)
	case e.stage == stageMail || e.stage == stageMessage:
		if held(&s.notAhead, now) {
			s.hold(&s.notAhead)
		}
		if e.stage == stageMessage && held(&s.rcptAlone, now) {
			s.hold(&s.rcptAlone)
		}
	}
}

// writeMessage writes data, the message, as BDAT's one chunk (chunked)
// or as DATA's content (writeDotStuffed). It ends with CRLF either way.
// The message goes into the connection's buffer and out with what comes
// after it in one write when they fit in its 4 KiB, as authd's mails
// (about 2 KiB) do.
func writeMessage(w *bufio.Writer, data []byte, chunked bool) {
	if !chunked {
		writeDotStuffed(w, data)
		return
	}
	crlf := bytes.HasSuffix(data, []byte("\r\n"))
	size := len(data)
	if !crlf {
		size += 2
	}
	w.WriteString("BDAT ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(size), 10))
	w.WriteString(" LAST\r\n")
	w.Write(data)
	if !crlf {
		w.WriteString("\r\n")
	}
}

// writeDotStuffed writes data as DATA's content (RFC 5321 §4.5.2): a dot
// before each line that begins with one, then the ending dot. data must
// have CRLF line ends only, as buildMessage's has (every header is
// checked or encoded, every part 7bit with LF made CRLF or
// quoted-printable, which makes each CR and LF a CRLF): unlike
// textproto's DotWriter, it does not mend bare line ends. That
// DotWriter handled a byte at a time, a tenth of a send's CPU.
func writeDotStuffed(w *bufio.Writer, data []byte) {
	if len(data) > 0 && data[0] == '.' {
		w.WriteByte('.')
	}
	for {
		i := bytes.Index(data, []byte("\n."))
		if i < 0 {
			break
		}
		w.Write(data[:i+1])
		w.WriteByte('.')
		data = data[i+1:]
	}
	w.Write(data)
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
}

// get returns a kept connection (reused true) or dials a new one; a new
// one always when fresh.
func (s *SMTPSender) get(ctx context.Context, fresh bool) (c *smtpConn, reused bool, err error) {
	if fresh {
		c, err = s.dial(ctx)
		return c, false, err
	}
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

// dial opens, greets, secures and authenticates a new connection, each
// step's failure tagged with the step (stageError). The whole of it is
// bounded by Timeout (the socket's deadline) and by ctx: a cancel closes
// the socket whatever step is waiting.
func (s *SMTPSender) dial(ctx context.Context) (*smtpConn, error) {
	deadline := time.Now().Add(s.cfg.Timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)))
	if err != nil {
		return nil, &stageError{stage: stageConnect, err: err}
	}
	if err := raw.SetDeadline(deadline); err != nil {
		raw.Close()
		return nil, &stageError{stage: stageConnect, err: err}
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	c, plainOffered, err := s.open(raw)
	if !stop() && err == nil {
		err = context.Cause(ctx) // cut as it finished: the session is gone
	}
	if err != nil {
		raw.Close() // go-mail leaves the socket open when a step fails
		return nil, err
	}
	sc := &smtpConn{c: c, raw: raw, plainOffered: plainOffered}
	sc.pipelining, _ = c.Extension("PIPELINING")
	sc.chunking, _ = c.Extension("CHUNKING")
	sc.enhanced, _ = c.Extension("ENHANCEDSTATUSCODES")
	// As go-mail's Client.Mail (without DSN, and with SMTPUTF8 not
	// turned off) has always sent them.
	if ok, _ := c.Extension("8BITMIME"); ok {
		sc.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		sc.mailParams += " SMTPUTF8"
	}
	return sc, nil
}

// open runs a new connection's steps up to a session ready for MAIL FROM:
// implicit TLS, the greeting, EHLO, STARTTLS, AUTH. plainOffered is
// smtpConn's.
func (s *SMTPSender) open(raw net.Conn) (c *smtp.Client, plainOffered bool, err error) {
	conn := raw
	if s.implicitTLS {
		tc := tls.Client(raw, s.tlsConfig)
		if err := tc.Handshake(); err != nil {
			return nil, false, &stageError{stage: stageTLS, err: err}
		}
		conn = tc
	}
	c, err = smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return nil, false, &stageError{stage: stageGreeting, err: err}
	}
	if err := c.Hello(s.helo); err != nil {
		return nil, false, &stageError{stage: stageEHLO, err: err}
	}
	offered, _ := c.Extension("STARTTLS")
	plainOffered = s.tlsConfig == nil && offered
	if s.tlsConfig != nil && !s.implicitTLS {
		// TLS is required: never a silent downgrade to plain text.
		if !offered {
			return nil, false, &stageError{stage: stageSTARTTLS, err: errNoSTARTTLS}
		}
		if err := c.StartTLS(s.tlsConfig); err != nil {
			return nil, false, &stageError{stage: stageSTARTTLS, err: err}
		}
	}
	if s.cfg.Username != "" {
		err := c.Auth(&plainOrLogin{
			user: s.cfg.Username, pass: s.cfg.Password, host: s.cfg.Host,
			// Plain SMTP with credentials is what SMTP_TLS=false with
			// SMTP_USER asks for; cmd/authd warns about it at start.
			allowUnencrypted: s.tlsConfig == nil,
		})
		if err != nil {
			return nil, false, &stageError{stage: stageAUTH, err: err, plainOffered: plainOffered}
		}
	}
	return c, plainOffered, nil
}

// close ends the session politely when the server still listens, within a
// second, and closes the socket in any case. A MAIL FROM sent ahead has
// its reply read first, so that QUIT's is the one Quit reads; any reply
// will do, only a broken connection gets no QUIT.
func (c *smtpConn) close() {
	if c.c.HasConnection() && c.c.UpdateDeadline(time.Second) == nil {
		inStep := true
		if c.opened {
			var reply *textproto.Error
			_, _, err := c.c.Text.ReadResponse(250)
			inStep = err == nil || errors.As(err, &reply)
		}
		if inStep {
			_ = c.c.Quit()
		}
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

// The variables a failure points the operator at (authd.SendError.Setting):
// the names cmd/authd reads them from.
const (
	settingHost      = "SMTP_HOST, SMTP_PORT"
	settingTLS       = "SMTP_TLS"
	settingAuth      = "SMTP_USER, SMTP_PASSWORD"
	settingFrom      = "EMAILS_FROM_EMAIL"
	settingTemplates = "EMAIL_TEMPLATES_DIR"
)

// minRedactedPassword is the shortest password looked for in error texts:
// a shorter one would blank out ordinary letters of them.
const minRedactedPassword = 4

// stage is a step of opening a session (dial), or of one message's
// transaction on it (transact).
type stage int

const (
	stageConnect  stage = iota // the TCP connection
	stageTLS                   // the implicit TLS handshake (SMTPS)
	stageGreeting              // the server's 220
	stageEHLO                  // EHLO, HELO as a fallback
	stageSTARTTLS              // STARTTLS offered, answered, its handshake
	stageAUTH                  // AUTH
	stageMail                  // MAIL FROM; setting the deadline before it
	stageRcpt                  // RCPT TO
	stageData                  // DATA, up to its 354
	stageMessage               // the message, its ending dot and the reply
)

var stageNames = [...]string{"connect", "TLS handshake", "greeting", "EHLO", "STARTTLS", "AUTH",
	"MAIL FROM", "RCPT TO", "DATA", "message"}

// stageError is the failure of one step: err is the server's reply (a
// *textproto.Error) when it answered, else what failed or cut the
// connection.
type stageError struct {
	stage        stage
	err          error
	plainOffered bool // as smtpConn's, for AUTH
	ahead        bool // the transaction's MAIL FROM went out with the last message (smtpConn.opened)
	withMessage  bool // at RCPT TO, unanswered, the message (BDAT) sent with it (transact)
	next         bool // the next mail's MAIL FROM went out in this transaction
}

func (e *stageError) Error() string { return stageNames[e.stage] + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

var errNoSTARTTLS = errors.New("the server does not offer STARTTLS, and TLS is required (no fallback to plain text)")

// class is what a failure means to the delivery worker: the fields of
// authd.SendError but Err.
type class struct {
	temporary, reply, session bool
	setting                   string
}

// classify tells what err, from dial or from sending a message on an open
// session, means:
//
//	step (what failed)                  Temporary  Reply  Session  Setting
//	connect: refused, timed out, DNS    yes        no     yes      SMTP_HOST, SMTP_PORT
//	TLS handshake (SMTPS) or STARTTLS:                             SMTP_TLS
//	  STARTTLS not offered              no         yes    yes
//	  STARTTLS answered 4xx / 5xx       4xx        yes    yes
//	  certificate not trusted, TLS
//	  refused, server speaks no TLS     no         no     yes
//	  timed out, cut                    yes        no     yes
//	greeting, EHLO answered 4xx / 5xx   4xx        yes    yes      ""
//	AUTH:                                                          SMTP_USER, SMTP_PASSWORD
//	  neither PLAIN nor LOGIN offered   no         yes    yes      (SMTP_TLS when plain*)
//	  answered 4xx / 5xx (535)          4xx        yes    yes
//	MAIL FROM answered 4xx              yes        yes    yes      ""
//	MAIL FROM answered 530 or 5.7.0
//	(AUTH or TLS required)              no         yes    yes      SMTP_USER, SMTP_PASSWORD (SMTP_TLS when plain*)
//	MAIL FROM answered another 5xx      no         yes    yes      EMAILS_FROM_EMAIL
//	RCPT TO answered 4xx / 5xx          4xx        yes    NO       ""
//	DATA, the message: 4xx / 5xx        4xx        yes    yes      ""
//	RCPT TO timed out (its reply, or
//	the caller's deadline)              yes        no     NO       ""
//	any other step but connect: timed out,
//	cut, no SMTP reply                  yes        no     yes      the step's, as above; "" from MAIL FROM on
//
// *plain: plainOffered, the session is in plain text on a server that
// offers STARTTLS; such servers commonly offer AUTH and take mail only
// over TLS, so the refusal is SMTP_TLS=false's.
//
// A recipient's own answer is the one failure that is not the session's:
// it says nothing of the other mails, and anyone can make it happen by
// asking codes for made-up addresses.
// atRcpt reports whether err is a failure at RCPT TO.
func atRcpt(err error) bool {
	var st *stageError
	return errors.As(err, &st) && st.stage == stageRcpt
}

// classify sorts a failed send's error; on is the connection it failed
// on, nil when none was had.
func classify(err error, on *smtpConn) class {
	plainOffered := on != nil && on.plainOffered
	code := replyCode(err)
	answered := code != 0 // replyCode's 400 to 599
	c := class{temporary: !answered || code < 500, reply: answered, session: true}

	var st *stageError
	if !errors.As(err, &st) {
		return c // not from a step: cut or cancelled on the way
	}
	switch st.stage {
	case stageConnect:
		c.setting = settingHost
	case stageTLS, stageSTARTTLS:
		c.setting = settingTLS
		switch {
		case errors.Is(err, errNoSTARTTLS):
			// The server answered EHLO, without STARTTLS: a retry meets
			// the same server.
			c.temporary, c.reply = false, true
		case !answered && tlsRefused(err):
			c.temporary = false
		}
	case stageAUTH:
		c.setting = settingAuth
		switch {
		case errors.Is(err, errNoAuthMechanism):
			c.temporary, c.reply = false, true
			if st.plainOffered {
				c.setting = settingTLS
			}
		case errors.Is(err, smtp.ErrUnencrypted):
			c.temporary, c.setting = false, settingTLS
		case errors.Is(err, smtp.ErrWrongHostname):
			c.temporary, c.setting = false, settingHost
		}
	case stageRcpt:
		// A connection cut at RCPT TO is the session's all the same; a
		// server that takes too long to answer it is slow on this
		// recipient: a relay checking the address with the recipient's
		// own server first (a callout), or that server a tarpit. One
		// recipient's stalls must neither hold up the others' mail in the
		// lag (MAIL_MAX_LAG) nor make mail look degraded.
		c.session = !answered && !errors.Is(err, os.ErrDeadlineExceeded)
	case stageMail:
		switch {
		case code >= 500 && (code == 530 || on != nil && on.enhanced && enhancedCode(err) == "5.7.0"):
			// RFC 4954's "authentication required"; servers answer the
			// same for "TLS required".
			c.setting = settingAuth
			if plainOffered {
				c.setting = settingTLS
			}
		case code >= 500:
			c.setting = settingFrom
		}
	}
	return c
}

// replyCode returns the code of the server's refusal that err carries, 4xx
// or 5xx; 0 when there is none: the connection failed, go-mail refused
// first, or the server answered out of turn (a 2xx or 3xx where another
// was due), which says no more than no reply.
func replyCode(err error) int {
	var reply *textproto.Error
	if errors.As(err, &reply) && reply.Code >= 400 && reply.Code < 600 {
		return reply.Code
	}
	return 0
}

// enhancedCodePattern is an enhanced status code (RFC 3463) in a reply's
// text, as go-mail read it.
var enhancedCodePattern = regexp.MustCompile(`\b[245]\.\d{1,3}\.\d{1,3}\b`)

// enhancedCode returns the first enhanced status code in the text of the
// reply err carries ("5.7.0"), "" when there is none. Only a server that
// offered ENHANCEDSTATUSCODES is read so.
func enhancedCode(err error) string {
	var reply *textproto.Error
	if !errors.As(err, &reply) {
		return ""
	}
	return enhancedCodePattern.FindString(reply.Msg)
}

// tlsRefused reports whether a TLS handshake failed in a way a retry
// meets again: the certificate does not verify, one side refused the
// other's parameters (an alert, sent or received), or the server does
// not speak TLS at all. A timeout or a cut connection is not one.
func tlsRefused(err error) bool {
	var (
		verification     *tls.CertificateVerificationError
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		header           tls.RecordHeaderError
		alert            tls.AlertError
		op               *net.OpError
	)
	switch {
	case errors.As(err, &verification), errors.As(err, &unknownAuthority), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &header), errors.As(err, &alert):
		return true
	case errors.As(err, &op) && (op.Op == "local error" || op.Op == "remote error"):
		// How crypto/tls reports the alerts it sends and receives.
		return true
	}
	return false
}

// stale reports whether err is a kept connection that died while idle: it
// broke, or the server said 421 closing, at the first reply the server
// gave since: MAIL FROM's, or RCPT TO's when MAIL FROM went out with
// the last message and was answered before the server dropped the
// connection. A recipient's own 421 comes again on the new connection,
// at RCPT TO after MAIL FROM, and is its answer then. With BDAT in RCPT
// TO's write the message went too: a server that took it and then closed
// the connection without a reply gets it again, a duplicate (same code),
// as after a cut at the dot.
func stale(err error) bool {
	var st *stageError
	// A server that does not answer in time is slow, not gone: another
	// connection would wait as long again.
	if !errors.As(err, &st) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if st.stage != stageMail && (st.stage != stageRcpt || !st.ahead) {
		return false
	}
	code := replyCode(err)
	return code == 0 || code == 421
}

// redactedError carries a cause whose text has had the address and the code
// taken out; the cause stays reachable with errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
