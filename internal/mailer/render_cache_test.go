package mailer_test

import (
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/mailer"
)

// TestRenderCacheSameAsTemplates: a mail rendered from its kind's cached
// rendering is what executing the templates gives, for the embedded
// templates and for overrides the cache must not be fooled by: one that
// prints the expiry, one that cuts the code apart, a project name holding
// a placeholder's digits.
func TestRenderCacheSameAsTemplates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"embedded", nil},
		{"expiry", map[string]string{"body.txt": "Code {{.Code}}, until {{.ExpiresAt.Format \"2006-01-02 15:04:05\"}}."}},
		{"expiry through the data", map[string]string{"body.txt": "Code {{.Code}}: {{printf \"%v\" .}}"}},
		{"code cut apart", map[string]string{"body.txt": "Code {{slice .Code 0 3}} {{slice .Code 3}} ({{.Code}})"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load := func() *mailer.Templates {
				if tc.files == nil {
					return mailer.DefaultTemplates()
				}
				tmpl, err := mailer.LoadTemplates(writeTemplates(t, tc.files))
				if err != nil {
					t.Fatal(err)
				}
				return tmpl
			}
			tmpl := load()
			base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			for i, code := range []string{"111111", "918273", "364510", "000000", "123456", "918273"} {
				m := message("ana@example.com", code)
				m.ExpiresAt = base.Add(time.Duration(i) * 26 * time.Hour)
				for _, name := range []string{"Example Shop", "Shop 918273", "Shop 364510", "Tom & Jerry's <Shop>"} {
					m.ProjectName = name
					got, err := tmpl.Render(m)
					if err != nil {
						t.Fatal(err)
					}
					want, err := tmpl.Direct(m)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Fatalf("code %s, project %q: cached rendering\n%+v\nwant\n%+v", code, name, got, want)
					}
					if !strings.Contains(got.Text, code) {
						t.Fatalf("code %s, project %q: the text lacks the code:\n%s", code, name, got.Text)
					}
				}
			}
		})
	}
}
