package mailer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authd/authd/internal/mailer"
)

func TestDefaultTemplates(t *testing.T) {
	m := message("ana@example.com", "012345")
	m.ProjectName = `Tom & Jerry's <Shop>`
	r, err := mailer.DefaultTemplates().Render(m)
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != `Your verification code for Tom & Jerry's <Shop>` {
		t.Errorf("Subject = %q", r.Subject)
	}
	if !strings.Contains(r.Text, "012345") || !strings.Contains(r.Text, "5 minutes") || !strings.Contains(r.Text, `Tom & Jerry's <Shop>`) {
		t.Errorf("text:\n%s", r.Text)
	}
	if !strings.Contains(r.HTML, "012345") || !strings.Contains(r.HTML, "5 minutes") || !strings.Contains(r.HTML, "Tom &amp; Jerry&#39;s &lt;Shop&gt;") {
		t.Errorf("html is not escaped or lacks the code:\n%s", r.HTML)
	}
}

func writeTemplates(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadTemplatesOverride(t *testing.T) {
	dir := writeTemplates(t, map[string]string{
		"subject.txt": "{{.ProjectName}} sign-in code",
		"body.txt":    "Code {{.Code}}, {{.Minutes}} min.",
	})
	tmpl, err := mailer.LoadTemplates(dir)
	if err != nil {
		t.Fatalf("LoadTemplates: %v", err)
	}
	r, err := tmpl.Render(message("ana@example.com", "654321"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != "Example Shop sign-in code" || r.Text != "Code 654321, 5 min." {
		t.Errorf("override not used: %q / %q", r.Subject, r.Text)
	}
	if !strings.Contains(r.HTML, "<!DOCTYPE html>") || !strings.Contains(r.HTML, "654321") {
		t.Errorf("body.html should stay the embedded one:\n%s", r.HTML)
	}
}

func TestLoadTemplatesBroken(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"parse error":        {"body.txt": "Code {{.Code"},
		"unknown field":      {"body.txt": "Code {{.Code}} {{.Nope}}"},
		"html parse error":   {"body.html": "<p>{{if .Code}}</p>"},
		"no code in text":    {"body.txt": "Hello"},
		"no code in html":    {"body.html": "<p>Hello</p>"},
		"empty subject":      {"subject.txt": "  \n"},
		"no template at all": {"README": "nothing here"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := mailer.LoadTemplates(writeTemplates(t, files)); err == nil {
				t.Errorf("LoadTemplates accepted %v", files)
			} else {
				t.Logf("error: %v", err)
			}
		})
	}
	if _, err := mailer.LoadTemplates(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("LoadTemplates accepted a missing directory")
	}
}
