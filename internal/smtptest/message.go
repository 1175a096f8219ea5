package smtptest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
)

// Message is one accepted message: the envelope, the raw data, and the
// parsed form tests assert on.
type Message struct {
	From string   // MAIL FROM
	To   []string // RCPT TO, in order
	Data []byte   // the message as received, CRLF line ends

	// Header is the top-level header, values as sent (RFC 2047 words not
	// decoded). Subject is the decoded Subject.
	Header  mail.Header
	Subject string
	// Text and HTML are the first text/plain and text/html parts (or the
	// single-part body), transfer-decoded (quoted-printable, base64).
	Text string
	HTML string
	// ParseErr says why Data could not be parsed; the fields above are then
	// partial.
	ParseErr error
}

var wordDecoder = mime.WordDecoder{}

// Parse reads a message as the server would have received it (no
// envelope): for tests of how a mail is built.
func Parse(data []byte) Message { return parse("", nil, data) }

func parse(from string, to []string, data []byte) Message {
	m := Message{From: from, To: to, Data: data}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		m.ParseErr = fmt.Errorf("read message: %w", err)
		return m
	}
	m.Header = msg.Header
	if subj, err := wordDecoder.DecodeHeader(msg.Header.Get("Subject")); err == nil {
		m.Subject = subj
	} else {
		m.ParseErr = fmt.Errorf("decode subject: %w", err)
	}
	if err := m.walk(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0); err != nil && m.ParseErr == nil {
		m.ParseErr = err
	}
	return m
}

// walk fills Text and HTML from one entity, descending into multiparts.
func (m *Message) walk(contentType, cte string, body io.Reader, depth int) error {
	if depth > 8 {
		return fmt.Errorf("multipart nesting deeper than 8")
	}
	if contentType == "" {
		contentType = "text/plain; charset=us-ascii"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("content type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			// NextRawPart leaves the transfer encoding to decode, so it is
			// decoded here the same way for every part.
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			if err := m.walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1); err != nil {
				return err
			}
		}
	}
	if mediaType != "text/plain" && mediaType != "text/html" {
		return nil
	}
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	case "", "7bit", "8bit", "binary":
		r = body
	default:
		return fmt.Errorf("unknown transfer encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("%s part: %w", mediaType, err)
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch {
	case mediaType == "text/plain" && m.Text == "":
		m.Text = text
	case mediaType == "text/html" && m.HTML == "":
		m.HTML = text
	}
	return nil
}

// newlineStripper drops CR and LF, which base64 bodies are wrapped with.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

var codeRE = regexp.MustCompile(`(?:^|[^0-9])([0-9]{6})(?:[^0-9]|$)`)

// CodeFrom returns the first run of exactly six digits in the message's
// text part, or "" when there is none.
func CodeFrom(m Message) string {
	if sm := codeRE.FindStringSubmatch(m.Text); sm != nil {
		return sm[1]
	}
	return ""
}
