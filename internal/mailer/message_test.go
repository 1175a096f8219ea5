package mailer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/smtptest"
)

// The mail built by hand reads as go-mail's did: the same headers,
// decoded subject and sender, and both parts, for plain and non-ASCII
// texts alike.
func TestBuildMessageReadsAsGoMails(t *testing.T) {
	for _, tc := range []struct{ name, fromName, project string }{
		{"ASCII", "Auth Service", "Example Shop"},
		{"non-ASCII", "Auth Sérvice", "Café Zürich ✓ — a name long enough that its encoded subject takes more than one encoded word"},
		{"long sender", strings.Repeat("認証サービス", 30), "Example Shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
			s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", FromName: tc.fromName, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			m := authd.Message{To: "ana@example.com", ProjectID: "shop", ProjectName: tc.project, Code: "123456", TTL: 5 * time.Minute}
			raw, err := s.buildMessage(m, "ana@example.com")
			if err != nil {
				t.Fatal(err)
			}
			old, err := s.goMailMessage(m, "ana@example.com")
			if err != nil {
				t.Fatal(err)
			}
			got, want := smtptest.Parse(raw), smtptest.Parse(old)
			if got.ParseErr != nil || want.ParseErr != nil {
				t.Fatalf("parse: %v / %v", got.ParseErr, want.ParseErr)
			}
			if got.Subject != want.Subject || got.Text != want.Text || got.HTML != want.HTML {
				t.Errorf("subject, text or HTML differ:\n%q\n%q\n%q\nwant\n%q\n%q\n%q", got.Subject, got.Text, got.HTML, want.Subject, want.Text, want.HTML)
			}
			if smtptest.CodeFrom(got) != "123456" {
				t.Errorf("code %q", smtptest.CodeFrom(got))
			}
			for _, h := range []string{"From", "To", "Date", "MIME-Version", "Auto-Submitted", "X-Auto-Response-Suppress"} {
				if g, w := got.Header.Get(h), want.Header.Get(h); g != w {
					t.Errorf("%s: %q, want %q", h, g, w)
				}
			}
			if id := got.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
				t.Errorf("Message-ID %q", id)
			}
			// RFC 5322's 78 octets a line; RFC 2047's 76 for a line with
			// encoded words.
			for i, line := range bytes.Split(raw, []byte("\r\n")) {
				if len(line) > 78 || bytes.Contains(line, []byte("=?")) && len(line) > 76 || bytes.ContainsAny(line, "\r\n") {
					t.Errorf("line %d: %d octets or a bare line end: %q", i+1, len(line), line)
				}
			}
		})
	}
}

// Each mail has its own Message-ID and boundary, random from one read of
// the random source: the id's 26 and the boundary's 52 characters of
// rand.Text's alphabet.
func TestBuildMessageRandomNames(t *testing.T) {
	s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`^<[a-z2-7]{26}@example\.com>$`)
	boundary := regexp.MustCompile(`boundary=([A-Z2-7]{52})\r\n`)
	ids, boundaries := map[string]bool{}, map[string]bool{}
	for range 100 {
		raw, err := s.buildMessage(authd.Message{To: "ana@example.com", ProjectName: "Shop", Code: "123456", TTL: time.Minute}, "ana@example.com")
		if err != nil {
			t.Fatal(err)
		}
		m := smtptest.Parse(raw)
		if m.ParseErr != nil {
			t.Fatal(m.ParseErr)
		}
		got := m.Header.Get("Message-ID")
		if !id.MatchString(got) {
			t.Fatalf("Message-ID %q", got)
		}
		b := boundary.FindSubmatch(raw)
		if b == nil {
			t.Fatalf("no boundary of 52 characters in %q", raw[:min(len(raw), 400)])
		}
		ids[got], boundaries[string(b[1])] = true, true
	}
	if len(ids) != 100 || len(boundaries) != 100 {
		t.Errorf("%d Message-IDs and %d boundaries in 100 mails, want 100 of each", len(ids), len(boundaries))
	}
}

// The recipient cannot end the To header (or RCPT TO) or start another:
// Send refuses it as the recipient's own error, for good, before any
// connection, and the mail is not built either.
func TestBuildMessageRefusesHeaderBreaks(t *testing.T) {
	s, err := NewSMTPSender(Config{Host: "127.0.0.1", Port: 1, From: "info@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"a@example.com>\r\nBcc: <b@example.com", "a@example.com\nX: y", "<a@example.com>"} {
		m := authd.Message{To: to, ProjectName: "Shop", Code: "123456", TTL: time.Minute}
		if _, err := s.buildMessage(m, to); err == nil {
			t.Errorf("%q: built", to)
		}
		var se *authd.SendError
		if err := s.Send(t.Context(), m); !errors.As(err, &se) || se.Temporary || se.Session || se.Setting != "" {
			t.Errorf("%q: Send = %v (%+v), want the recipient's permanent error", to, err, se)
		}
	}
}

func BenchmarkBuildMessage(b *testing.B) {
	s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", FromName: "Auth Service"})
	if err != nil {
		b.Fatal(err)
	}
	m := authd.Message{To: "ana@example.com", ProjectID: "shop", ProjectName: "Example Shop", Code: "123456", TTL: 5 * time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.buildMessage(m, "ana@example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// goMailMessage is the mail as go-mail's Msg built it before
// buildMessage, for comparison.
func (s *SMTPSender) goMailMessage(m authd.Message, to string) ([]byte, error) {
	r, err := s.templates.Render(m)
	if err != nil {
		return nil, err
	}
	msg := mail.NewMsg(mail.WithNoDefaultUserAgent())
	from := s.from
	msg.FromMailAddress(&from)
	if err := msg.To(to); err != nil {
		return nil, err
	}
	msg.Subject(r.Subject)
	msg.SetMessageIDWithValue("x@" + s.fromDomain)
	msg.SetDateWithValue(s.now())
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetGenHeader("X-Auto-Response-Suppress", "All")
	msg.SetBodyString(mail.TypeTextPlain, r.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, r.HTML)
	var b bytes.Buffer
	_, err = msg.WriteTo(&b)
	return b.Bytes(), err
}

// The allocations of building a mail, held to a budget (deterministic,
// unlike timing): go-mail's Msg took 148; a change that brings that back
// fails here.
func TestBuildMessageAllocBudget(t *testing.T) {
	s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", FromName: "Auth Service"})
	if err != nil {
		t.Fatal(err)
	}
	m := authd.Message{To: "ana@example.com", ProjectID: "shop", ProjectName: "Example Shop", Code: "123456", TTL: 5 * time.Minute}
	if _, err := s.buildMessage(m, "ana@example.com"); err != nil { // the templates' kind, cached
		t.Fatal(err)
	}
	const budget = 40
	got := testing.AllocsPerRun(200, func() { s.buildMessage(m, "ana@example.com") })
	t.Logf("%.0f allocations per mail built (budget %d)", got, budget)
	if got > budget {
		t.Errorf("building a mail takes %.0f allocations, over the budget of %d", got, budget)
	}
}

// A part goes as it is (7bit) only when it needs no encoding: ASCII, no
// CR, no line over 78 octets; anything else quoted-printable. The
// default templates' mail for an ASCII project name needs none.
func TestBuildMessageEncodesOnlyWhatNeedsIt(t *testing.T) {
	s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", FromName: "Auth Service"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		project string
		want    []string // each part's Content-Transfer-Encoding: text, HTML
	}{
		// The text's signature line, "-- ", ends in a space.
		{"Example Shop", []string{"quoted-printable", "7bit"}},
		{"Café", []string{"quoted-printable", "quoted-printable"}},
		// Too long for a line of the text part (and of the HTML's).
		{strings.Repeat("Shop ", 16), []string{"quoted-printable", "quoted-printable"}},
	} {
		m := authd.Message{To: "ana@example.com", ProjectName: tc.project, Code: "123456", TTL: 5 * time.Minute}
		raw, err := s.buildMessage(m, "ana@example.com")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(string(raw), "\r\n") {
			if v, ok := strings.CutPrefix(line, "Content-Transfer-Encoding: "); ok {
				got = append(got, v)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: encodings %q, want %q", tc.project, got, tc.want)
		}
		parsed := smtptest.Parse(raw)
		r, _ := s.templates.Render(m)
		if parsed.Text != r.Text || parsed.HTML != r.HTML {
			t.Errorf("%q: decoded parts differ from the rendered ones", tc.project)
		}
		for i, line := range strings.Split(string(raw), "\r\n") {
			if len(line) > 78 || strings.ContainsAny(line, "\r\n") {
				t.Errorf("%q: line %d: %d octets or a bare line end", tc.project, i+1, len(line))
			}
		}
	}
	for body, want := range map[string]bool{
		"": true, "a\nb\n": true, strings.Repeat("x", 78): true,
		strings.Repeat("x", 79): false, "a\r\nb": false, "é": false, "a\x00": false,
		"-- \nSig": false, "a\t\nb": false, "a ": false, " a\n": true,
	} {
		if got := isPlain7bit(body); got != want {
			t.Errorf("isPlain7bit(%q) = %v", body, got)
		}
	}
}

func TestFold(t *testing.T) {
	for _, tc := range []struct {
		value string
		room  int
		want  string
	}{
		{"short", 10, "short"},
		// Never a line of white space alone, nor one ending the value.
		{"abc    def", 4, "abc   \r\n def"},
		{"abcdef ", 4, "abcdef "},
		{"ab " + strings.Repeat(" ", 100) + "cd", 10, "ab" + strings.Repeat(" ", 100) + "\r\n cd"},
		{"one two three", 6, "one\r\n two three"},
		{"one two three", 8, "one two\r\n three"},
		{"unbreakable-word and more", 5, "unbreakable-word\r\n and more"},
		{strings.Repeat("ab ", 40), 69, strings.Repeat("ab ", 22) + "ab\r\n" + strings.Repeat(" ab", 17) + " "},
	} {
		got := fold(tc.value, tc.room)
		if got != tc.want {
			t.Errorf("fold(%q, %d) = %q, want %q", tc.value, tc.room, got, tc.want)
		}
		if strings.ReplaceAll(got, "\r\n", "") != tc.value {
			t.Errorf("fold(%q) does not unfold to it", tc.value)
		}
	}
}

// Every header line of a mail holds 78 octets at most, and none is white
// space alone, whatever the length of the subject and the sender's name,
// and when an ASCII name holds "=?" (not an encoded word).
func TestBuildMessageHeaderLines(t *testing.T) {
	for k := 1; k <= 50; k++ {
		for _, name := range []string{strings.Repeat("ab ", k), "Shop=? " + strings.Repeat("Long ", k), strings.Repeat("é ", k)} {
			s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", FromName: name})
			if err != nil {
				t.Fatal(err)
			}
			m := authd.Message{To: "ana@example.com", ProjectName: name, Code: "123456", TTL: 5 * time.Minute}
			raw, err := s.buildMessage(m, "ana@example.com")
			if err != nil {
				t.Fatal(err)
			}
			head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
			for i, line := range strings.Split(head, "\r\n") {
				if len(line) > 78 || strings.TrimSpace(line) == "" {
					t.Errorf("%q: header line %d: %q", name, i+1, line)
				}
			}
			got := smtptest.Parse(raw)
			if want, _ := s.templates.Render(m); got.ParseErr != nil || got.Subject != want.Subject {
				t.Errorf("%q: subject %q (%v), want %q", name, got.Subject, got.ParseErr, want.Subject)
			}
		}
	}
}

// writeDotStuffed writes what textproto's DotWriter did, byte for byte,
// for the CRLF-only data it is given: leading dots, a dot alone, data
// ending without a line end or with a dot, none at all.
func TestWriteDotStuffed(t *testing.T) {
	for _, data := range []string{
		"", ".", "x", "x\r\n", ".x\r\n", "x\r\n.", "x\r\n.\r\n", "..\r\n.\r\n..x\r\n", "a\r\n.\r\nQUIT\r\n", "\r\n\r\n.",
	} {
		var got, want bytes.Buffer
		w := bufio.NewWriter(&got)
		writeDotStuffed(w, []byte(data))
		w.Flush()
		tw := textproto.NewWriter(bufio.NewWriter(&want))
		dw := tw.DotWriter()
		dw.Write([]byte(data))
		dw.Close()
		if got.String() != want.String() {
			t.Errorf("%q: wrote %q, textproto %q", data, got.String(), want.String())
		}
	}
}

// writeMessage's BDAT chunk is the message as it is, CRLF at its end,
// and BDAT's size counts every byte of it; DATA's is writeDotStuffed's.
func TestWriteMessage(t *testing.T) {
	for _, tc := range []struct{ data, chunk string }{
		{"", "BDAT 2 LAST\r\n\r\n"},
		{"x", "BDAT 3 LAST\r\nx\r\n"},
		{".x\r\n", "BDAT 4 LAST\r\n.x\r\n"},
		{"a\r\n.\r\nQUIT", "BDAT 12 LAST\r\na\r\n.\r\nQUIT\r\n"},
	} {
		var chunk, data, stuffed bytes.Buffer
		w := bufio.NewWriter(&chunk)
		writeMessage(w, []byte(tc.data), true)
		w.Flush()
		if chunk.String() != tc.chunk {
			t.Errorf("%q as BDAT: %q, want %q", tc.data, chunk.String(), tc.chunk)
		}
		w = bufio.NewWriter(&data)
		writeMessage(w, []byte(tc.data), false)
		w.Flush()
		w = bufio.NewWriter(&stuffed)
		writeDotStuffed(w, []byte(tc.data))
		w.Flush()
		if data.String() != stuffed.String() {
			t.Errorf("%q as DATA: %q, want writeDotStuffed's %q", tc.data, data.String(), stuffed.String())
		}
	}
}

// A kind's parts encoded once and the code put in (encodeKind) are the
// bytes encoding each mail's own rendering gives, for every code; a kind
// whose encoding would not hold the code whole (a quoted-printable soft
// line break inside it) is encoded per mail, as is a mail whose code is
// not the placeholders' six digits.
func TestBuildMessageCachedPartsAsEncodedPerMail(t *testing.T) {
	dir := t.TempDir()
	// 74 octets, then the code: a line over 78, so quoted-printable,
	// whose soft break after 75 octets falls inside the code.
	straddle := strings.Repeat("x", 74) + "{{.Code}} ({{.ProjectName}}, {{.Minutes}} min)\n"
	for name, src := range map[string]string{"body.txt": straddle, "body.html": "<p>" + straddle + "</p>\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	straddling, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 72 octets, then the code: a line of 78, 7bit with a six-digit code,
	// over the limit with a longer one.
	dir = t.TempDir()
	atLimit := strings.Repeat("x", 72) + "{{.Code}}\n{{.ProjectName}}, {{.Minutes}} min\n"
	for name, src := range map[string]string{"body.txt": atLimit, "body.html": atLimit} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	limit, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		tmpl   *Templates
		cached bool // the kind's parts are encoded once (for the plain ASCII project)
	}{
		{"default", DefaultTemplates(), true},
		{"code across a soft line break", straddling, false},
		{"code at the end of a line of 78", limit, true},
	} {
		s, err := NewSMTPSender(Config{Host: "127.0.0.1", From: "info@example.com", Templates: tc.tmpl})
		if err != nil {
			t.Fatal(err)
		}
		for _, project := range []string{"Example Shop", "Zoë's Café & <Bar>", strings.Repeat("Long Project Name ", 8)} {
			for i := range 40 {
				code := fmt.Sprintf("%06d", (i*7919+13)%1000000)
				if i == 39 {
					code = "1234567" // not a code the proof covers
				}
				m := authd.Message{To: "ana@example.com", ProjectName: project, Code: code, TTL: 5 * time.Minute}
				k, ok, err := s.templates.kind(m)
				if err != nil || !ok {
					t.Fatalf("%s, %q: kind cached = %v, %v", tc.name, project, ok, err)
				}
				// With a plain ASCII project the default kind is 7bit
				// where its code is; whether another project's is
				// depends on its line lengths: only the bytes are
				// held to account there.
				if got := k.encoding() != nil; got != tc.cached && (!tc.cached || project == "Example Shop") {
					t.Fatalf("%s, %q: encoded once = %v, want %v", tc.name, project, got, tc.cached)
				}
				subject, parts, err := s.content(m)
				if err != nil {
					t.Fatal(err)
				}
				r, err := s.templates.Direct(m)
				if err != nil {
					t.Fatal(err)
				}
				if subject != r.Subject {
					t.Errorf("%s, %q, %s: subject %q, want %q", tc.name, project, code, subject, r.Subject)
				}
				for j, body := range []string{r.Text, r.HTML} {
					cte, want, err := encodePart(body)
					if err != nil {
						t.Fatal(err)
					}
					var got bytes.Buffer
					parts[j].write(&got, code)
					if parts[j].cte != cte || got.String() != want {
						t.Fatalf("%s, %q, %s, part %d: %s\n%s\nwant %s\n%s", tc.name, project, code, j, parts[j].cte, got.String(), cte, want)
					}
				}
			}
		}
	}
}
