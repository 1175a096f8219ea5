package mailer

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"

	"github.com/authd/authd"
	"github.com/authd/authd/locale"
)

// The embedded templates; a directory given to LoadTemplates may replace
// any of them by holding a file of the same name.
//
//go:embed templates/subject.txt templates/body.txt templates/body.html
var embedded embed.FS

// The hosted sign-in's mail, code and link, in the language of its page
// (signin.go); its words come from the locale catalogue.
//
//go:embed templates/signin.txt templates/signin.html
var signinFiles embed.FS

var (
	signinText = texttemplate.Must(texttemplate.New("signin.txt").Option("missingkey=error").ParseFS(signinFiles, "templates/signin.txt"))
	signinHTML = htmltemplate.Must(htmltemplate.New("signin.html").Option("missingkey=error").ParseFS(signinFiles, "templates/signin.html"))
)

// signinData is what the sign-in mail's templates are executed with.
type signinData struct {
	ProjectName string
	Code        string
	Link        string
	Minutes     int
	Lang        string
	L           locale.Lang
}

// renderSignIn renders a hosted sign-in's mail: the code and the link.
func renderSignIn(m authd.Message) (Rendered, error) {
	l := locale.Of(m.Lang)
	d := signinData{ProjectName: headerText(m.ProjectName), Code: m.Code, Link: m.Link, Minutes: minutes(m.TTL), Lang: string(l), L: l}
	var text, html bytes.Buffer
	if err := signinText.Execute(&text, d); err != nil {
		return Rendered{}, err
	}
	if err := signinHTML.Execute(&html, d); err != nil {
		return Rendered{}, err
	}
	return Rendered{Subject: headerText(l.T("mail.subject", "project", d.ProjectName)), Text: text.String(), HTML: html.String()}, nil
}

const (
	subjectFile = "subject.txt" // text/template; one line, control characters removed
	textFile    = "body.txt"    // text/template: the text/plain part
	htmlFile    = "body.html"   // html/template: the text/html part
)

// TemplateData is what the templates are executed with.
type TemplateData struct {
	ProjectName string // the project's display name, never the raw project_id
	Code        string
	Minutes     int // the code's lifetime in minutes, rounded down, at least 1
	ExpiresAt   time.Time
}

// Templates renders verification mails. It is safe for concurrent use.
type Templates struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
	cache   renderCache // each kind of mail executed once (render_cache.go)
}

// Rendered is one mail's subject and bodies.
type Rendered struct {
	Subject string // one line: safe for a header
	Text    string
	HTML    string
}

// DefaultTemplates returns the embedded templates.
func DefaultTemplates() *Templates {
	t, err := LoadTemplates("")
	if err != nil {
		// The embedded templates are checked by the tests: this is a
		// broken build, not a runtime condition.
		panic("mailer: embedded templates: " + err.Error())
	}
	return t
}

// LoadTemplates parses the templates, each from dir when dir holds a file
// of its name (subject.txt, body.txt, body.html) and embedded otherwise; an
// empty dir means all embedded. Every template is executed once with sample
// data and must show the code, so a broken override stops start-up instead
// of failing each mail.
func LoadTemplates(dir string) (*Templates, error) {
	read := func(name string) (string, bool, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return string(b), true, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", false, fmt.Errorf("mail templates: %w", err)
			}
		}
		b, err := embedded.ReadFile("templates/" + name)
		return string(b), false, err
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("mail templates: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("mail templates: %s is not a directory", dir)
		}
	}

	var t Templates
	overridden := 0
	for _, name := range []string{subjectFile, textFile, htmlFile} {
		src, fromDir, err := read(name)
		if err != nil {
			return nil, err
		}
		if fromDir {
			overridden++
		}
		switch name {
		case subjectFile:
			t.subject, err = texttemplate.New(name).Option("missingkey=error").Parse(src)
		case textFile:
			t.text, err = texttemplate.New(name).Option("missingkey=error").Parse(src)
		case htmlFile:
			t.html, err = htmltemplate.New(name).Option("missingkey=error").Parse(src)
		}
		if err != nil {
			return nil, fmt.Errorf("mail templates: %w", err)
		}
	}
	if dir != "" && overridden == 0 {
		return nil, fmt.Errorf("mail templates: %s holds none of %s, %s, %s", dir, subjectFile, textFile, htmlFile)
	}

	const sampleCode = "987654"
	r, err := t.render(TemplateData{ProjectName: `Sample <&> "Project"`, Code: sampleCode, Minutes: 5, ExpiresAt: time.Unix(0, 0)})
	if err != nil {
		return nil, fmt.Errorf("mail templates: %w", err)
	}
	switch {
	case r.Subject == "":
		return nil, fmt.Errorf("mail templates: %s renders an empty subject", subjectFile)
	case !strings.Contains(r.Text, sampleCode):
		return nil, fmt.Errorf("mail templates: %s does not show the code ({{.Code}})", textFile)
	case !strings.Contains(r.HTML, sampleCode):
		return nil, fmt.Errorf("mail templates: %s does not show the code ({{.Code}})", htmlFile)
	}
	return &t, nil
}

// Render renders the mail for m.
func (t *Templates) Render(m authd.Message) (Rendered, error) {
	if m.Link != "" {
		return renderSignIn(m)
	}
	return t.cache.render(t, templateData(m))
}

// kind returns m's kind, cached (render_cache.go); ok is false when m's
// mail is rendered on its own (Render).
func (t *Templates) kind(m authd.Message) (k *renderedKind, ok bool, err error) {
	if m.Link != "" {
		return nil, false, nil
	}
	return t.cache.kind(t, templateData(m))
}

func templateData(m authd.Message) TemplateData {
	return TemplateData{
		ProjectName: headerText(m.ProjectName),
		Code:        m.Code,
		Minutes:     minutes(m.TTL),
		ExpiresAt:   m.ExpiresAt,
	}
}

func (t *Templates) render(d TemplateData) (Rendered, error) {
	var subj, text, html bytes.Buffer
	if err := t.subject.Execute(&subj, d); err != nil {
		return Rendered{}, err
	}
	if err := t.text.Execute(&text, d); err != nil {
		return Rendered{}, err
	}
	if err := t.html.Execute(&html, d); err != nil {
		return Rendered{}, err
	}
	return Rendered{Subject: headerText(subj.String()), Text: text.String(), HTML: html.String()}, nil
}

// minutes is a lifetime in whole minutes, rounded down so a mail does not
// promise more time than the code has (but at least 1).
func minutes(ttl time.Duration) int {
	m := int(ttl / time.Minute)
	if m < 1 {
		return 1
	}
	return m
}

// maxHeaderRunes bounds a rendered header value; a subject longer than this
// is a template mistake, not a message.
const maxHeaderRunes = 200

// headerText makes s safe as one header value: every control character
// (CR and LF above all, which would start a new header) becomes a space,
// runs of spaces collapse, and the result is trimmed and bounded. Header
// values come from configuration, never from the request, but a display
// name with a stray newline must not become a header injection.
func headerText(s string) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= maxHeaderRunes {
			break
		}
		b.WriteRune(r)
		n++
	}
	// Cut at the bound, it may end in the space before the next word.
	return strings.TrimRight(b.String(), " ")
}
