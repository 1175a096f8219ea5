package mailer

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/authd/authd"
)

// randomText is rand.Text's encoding: base32, upper case, no padding.
var randomText = base32.StdEncoding.WithPadding(base32.NoPadding)

// buildMessage returns m's mail to the ASCII address to as it goes after
// DATA: the headers (Auto-Submitted and X-Auto-Response-Suppress, RFC
// 3834: vacation responders stay quiet), then multipart/alternative text
// and HTML, each UTF-8, CRLF line endings, built with the standard
// library's encoders into one buffer. A part goes as it is (7bit) when it
// is plain ASCII text that needs no encoding, as the default templates'
// are: a quarter smaller than quoted-printable (whose HTML turns every
// "=" into "=3D"), and nothing to encode or decode on either side;
// anything else goes quoted-printable. A cached kind's parts are
// encoded at its first mail, split around the code (encodeKind): scanning
// and encoding them for each mail was half of building it. go-mail's Msg
// built the same mail in 148 allocations and 15 µs, more than the rest
// of the send on a kept connection (BenchmarkBuildMessage: 5 µs and 13
// allocations now, 12.5 µs and 17 when each mail's parts were encoded).
func (s *SMTPSender) buildMessage(m authd.Message, to string) ([]byte, error) {
	subject, parts, err := s.content(m)
	if err != nil {
		return nil, err
	}
	// A line break would end a header (or the RCPT TO command) early and
	// start another of the address's choosing: NormalizeEmail's dot-atom
	// lets none through, nor angle brackets, and Send refuses them before
	// this as the recipient's error; this is the last line of defence.
	if strings.ContainsAny(to, "<>\r\n") {
		return nil, errors.New("smtp: the recipient is not a valid address")
	}
	// Both random names from one read of the random source, not a read
	// (a system call) for each, and in rand.Text's alphabet.
	var random [48]byte
	rand.Read(random[:])
	boundary := randomText.EncodeToString(random[:32])
	messageID := strings.ToLower(randomText.EncodeToString(random[32:]))
	var b bytes.Buffer
	b.Grow(parts[0].size(m.Code) + parts[1].size(m.Code) + 1024)
	header := func(name, value string, encoded bool) { writeHeader(&b, name, value, encoded) }
	header("Auto-Submitted", "auto-generated", false)
	header("Date", s.now().Format(time.RFC1123Z), false)
	header("MIME-Version", "1.0", false)
	header("Message-ID", "<"+messageID+"@"+s.fromDomain+">", false)
	// Q-encoded when not plain ASCII; the templates' subject is one line
	// (headerText).
	qsubject := mime.QEncoding.Encode("utf-8", subject)
	header("Subject", qsubject, qsubject != subject)
	header("X-Auto-Response-Suppress", "All", false)
	b.WriteString(s.fromHeader)
	header("To", "<"+to+">", false)
	header("Content-Type", "multipart/alternative;\r\n boundary="+boundary, false)
	for i, typ := range [...]string{"text/plain", "text/html"} {
		b.WriteString("\r\n--" + boundary + "\r\n")
		header("Content-Transfer-Encoding", parts[i].cte, false)
		header("Content-Type", typ+"; charset=UTF-8", false)
		b.WriteString("\r\n")
		parts[i].write(&b, m.Code)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// content returns m's subject and its text and HTML parts as they go in
// the mail: its kind's, encoded once and the code put in, when the kind
// is cached (encodeKind); rendered and encoded for this mail otherwise.
func (s *SMTPSender) content(m authd.Message) (string, [2]encodedPart, error) {
	k, ok, err := s.templates.kind(m)
	if err != nil {
		return "", [2]encodedPart{}, fmt.Errorf("smtp: render: %w", err)
	}
	if ok && authd.ValidCode(m.Code, len(placeholderA)) {
		if e := k.encoding(); e != nil {
			return strings.Join(k.subject, m.Code), e.parts, nil
		}
	}
	r, err := s.templates.Render(m)
	if err != nil {
		return "", [2]encodedPart{}, fmt.Errorf("smtp: render: %w", err)
	}
	var parts [2]encodedPart
	for i, body := range [...]string{r.Text, r.HTML} {
		cte, enc, err := encodePart(body)
		if err != nil {
			return "", [2]encodedPart{}, err
		}
		parts[i] = encodedPart{cte: cte, pieces: []string{enc}}
	}
	return r.Subject, parts, nil
}

// encodedPart is a part's body as it goes, split around the code, and its
// Content-Transfer-Encoding.
type encodedPart struct {
	cte    string
	pieces []string
}

func (p encodedPart) size(code string) int {
	n := len(code) * max(len(p.pieces)-1, 0)
	for _, piece := range p.pieces {
		n += len(piece)
	}
	return n
}

func (p encodedPart) write(b *bytes.Buffer, code string) {
	for i, piece := range p.pieces {
		if i > 0 {
			b.WriteString(code)
		}
		b.WriteString(piece)
	}
}

// encodedKind is a kind's text and HTML parts, encoded once for all its
// mails.
type encodedKind struct {
	parts [2]encodedPart
}

// encodeKind encodes k's parts once, split around the code, when that is
// provably what encoding each mail's would give: encoded with the two
// placeholder codes, the encodings must differ by the code alone, as the
// renderings do (kindOf). That holds for every code of the placeholders'
// length and digits only (authd.ValidCode): no encoding here tells one digit from
// another (each is 7bit, and quoted-printable as it is, one octet wide),
// so only a code's length and kind could move a line break or an escape.
// nil when the parts must be encoded per mail.
func encodeKind(k *renderedKind) *encodedKind {
	var e encodedKind
	for i, pieces := range [...][]string{k.text, k.html} {
		cteA, a, errA := encodePart(strings.Join(pieces, placeholderA))
		cteB, b, errB := encodePart(strings.Join(pieces, placeholderB))
		split := strings.Split(a, placeholderA)
		if errA != nil || errB != nil || cteA != cteB || len(split) != len(pieces) || strings.Join(split, placeholderB) != b {
			return nil
		}
		e.parts[i] = encodedPart{cte: cteA, pieces: split}
	}
	return &e
}

// encodePart encodes a part's body: as it is (7bit, LF made CRLF) when it
// is plain ASCII text that needs no encoding, quoted-printable otherwise.
func encodePart(body string) (cte, encoded string, err error) {
	var b bytes.Buffer
	b.Grow(len(body) + len(body)/8)
	if isPlain7bit(body) {
		writeCRLF(&b, body)
		return "7bit", b.String(), nil
	}
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body)); err != nil {
		return "", "", err
	}
	if err := qp.Close(); err != nil {
		return "", "", err
	}
	return "quoted-printable", b.String(), nil
}

// writeHeader writes one header to b; encoded says that value holds RFC
// 2047 encoded words (told by the caller: an ASCII value may hold "=?").
func writeHeader(b *bytes.Buffer, name, value string, encoded bool) {
	b.WriteString(name)
	b.WriteString(":")
	if encoded {
		// RFC 2047: a line with encoded words holds at most 76
		// characters, so each word (75 at most) goes on a line of its
		// own: folded before the first when the name leaves too little
		// room, and between words.
		value = strings.ReplaceAll(value, "?= ", "?=\r\n ")
		if first, _, _ := strings.Cut(value, "\r\n"); len(name)+2+len(first) > 76 {
			b.WriteString("\r\n")
		}
	} else if !strings.Contains(value, "\r\n") {
		value = fold(value, 78-len(name)-len(": "))
	}
	b.WriteString(" ")
	b.WriteString(value)
	b.WriteString("\r\n")
}

// fromHeader is the From header for from, the same in every mail.
func fromHeader(from netmail.Address) string {
	var b bytes.Buffer
	// net/mail encodes a display name unless it is printable ASCII.
	writeHeader(&b, "From", from.String(), !isPrintableASCII(from.Name))
	return b.String()
}

// maxLine is the longest line a part goes with as it is, CRLF not
// counted: RFC 5322's 78 (its hard limit is 998), so that a mail's
// lines are as short as quoted-printable would have made them.
const maxLine = 78

// isPlain7bit reports whether body can go as 7bit (RFC 2045 §2.7): ASCII
// without NUL or CR (its line breaks are LF, made CRLF by writeCRLF),
// each line within maxLine, and none ending in white space, which
// gateways may strip (a signature's "-- " would lose its space).
func isPlain7bit(body string) bool {
	line := 0
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\n':
			if i > 0 && (body[i-1] == ' ' || body[i-1] == '\t') {
				return false
			}
			line = 0
			continue
		case c == 0, c == '\r', c >= 0x80:
			return false
		}
		if line++; line > maxLine {
			return false
		}
	}
	return !strings.HasSuffix(body, " ") && !strings.HasSuffix(body, "\t")
}

// isPrintableASCII reports whether s is printable ASCII and spaces only.
func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// fold breaks a header value of plain text at spaces (RFC 5322 §2.2.3)
// so that its lines hold 78 octets at most, the first room; a word too
// long for a line stays whole on its own (within 998: config bounds the
// names). It folds only before a space followed by something else, so
// no line it makes is white space alone (which a relay could strip to
// the empty line that ends the headers), whatever the value.
func fold(value string, room int) string {
	if len(value) <= room {
		return value
	}
	// at reports whether a fold before value[i] leaves text on both lines.
	at := func(i int) bool { return value[i] == ' ' && i+1 < len(value) && value[i+1] != ' ' }
	var out strings.Builder
	for len(value) > room {
		// The last fold that leaves a line of room at most, not before
		// the space a continuation line starts with.
		i := room // < len(value)
		for i > 0 && !at(i) {
			i--
		}
		if i <= 0 {
			// A word longer than the room: after it, then.
			for i = max(room, 0) + 1; i < len(value) && !at(i); i++ {
			}
			if i >= len(value) {
				break
			}
		}
		out.WriteString(value[:i])
		out.WriteString("\r\n")
		value, room = value[i:], 78
	}
	out.WriteString(value)
	return out.String()
}

// writeCRLF writes body with each LF made CRLF.
func writeCRLF(b *bytes.Buffer, body string) {
	for {
		line, rest, found := strings.Cut(body, "\n")
		b.WriteString(line)
		if !found {
			return
		}
		b.WriteString("\r\n")
		body = rest
	}
}
