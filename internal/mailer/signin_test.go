package mailer_test

import (
	"strings"
	"testing"

	"github.com/authd/authd/internal/mailer"
)

// The hosted sign-in's mail: code and link in both parts, in each
// language of the catalogue, the project's name escaped in HTML, the
// subject one line; English for a language the catalogue lacks.
func TestSignInMail(t *testing.T) {
	const link = "https://auth.example.com/signin/link?c=012345&f=00112233445566778899aabbccddeeff"
	for lang, subject := range map[string]string{
		"en": "Sign in to Tom & Jerry's <Shop> Bcc: x@evil.example", "de": "Bei Tom & Jerry's <Shop> Bcc: x@evil.example anmelden",
		"fr": "Se connecter à Tom & Jerry's <Shop> Bcc: x@evil.example", "es": "Iniciar sesión en Tom & Jerry's <Shop> Bcc: x@evil.example",
		"ja": "Sign in to Tom & Jerry's <Shop> Bcc: x@evil.example",
	} {
		m := message("ana@example.com", "012345")
		m.ProjectName, m.Link, m.Lang = "Tom & Jerry's <Shop>\r\nBcc: x@evil.example", link, lang
		r, err := mailer.DefaultTemplates().Render(m)
		if err != nil {
			t.Fatal(err)
		}
		// The display name's line break is a space: no header injection.
		if r.Subject != subject {
			t.Errorf("%s: subject %q", lang, r.Subject)
		}
		if !strings.Contains(r.Text, "012345") || !strings.Contains(r.Text, link) {
			t.Errorf("%s: text lacks the code or the link:\n%s", lang, r.Text)
		}
		if strings.Index(r.Text, "012345") > strings.Index(r.Text, link) {
			t.Errorf("%s: the link comes before the code (a reader of the first six digits would take the link's)", lang)
		}
		if !strings.Contains(r.HTML, `href="`+strings.ReplaceAll(link, "&", "&amp;")+`"`) || !strings.Contains(r.HTML, "Tom &amp; Jerry&#39;s &lt;Shop&gt;") {
			t.Errorf("%s: HTML link or escaping:\n%s", lang, r.HTML)
		}
		wantLang := lang
		if lang == "ja" {
			wantLang = "en"
		}
		if !strings.Contains(r.HTML, `<html lang="`+wantLang+`">`) {
			t.Errorf("%s: HTML lang", lang)
		}
	}
}
