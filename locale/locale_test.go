package locale

import (
	"strings"
	"testing"
)

// Every language has every message English has, and no other: a
// translator's typo in an id is caught here, not on a user's screen.
func TestCatalogueComplete(t *testing.T) {
	for lang, ids := range Missing() {
		t.Errorf("%s.json: %s", lang, strings.Join(ids, ", "))
	}
	if got := Languages(); len(got) < 4 || got[0] != "en" {
		t.Fatalf("languages %v", got)
	}
}

// Every {placeholder} of an English message is in each translation.
func TestPlaceholdersKept(t *testing.T) {
	for id, en := range catalogue[Default] {
		for _, ph := range placeholders(en) {
			for lang, m := range catalogue {
				if !strings.Contains(m[id], ph) {
					t.Errorf("%s.json: %s lacks %s", lang, id, ph)
				}
			}
		}
	}
}

func placeholders(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "{")
		if i < 0 {
			return out
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			return out
		}
		out = append(out, s[i:i+j+1])
		s = s[i+j+1:]
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct{ ui, accept, want string }{
		{"", "", "en"},
		{"", "de-DE,de;q=0.9,en;q=0.5", "de"},
		{"", "fr-CH, fr;q=0.9", "fr"},
		{"", "es-419", "es"},
		{"", "ja", "en"},
		{"es", "de", "es"},
		{"ja fr", "de", "fr"},
		{"ja", "de", "de"},
		{"", "not a header;;;", "en"},
	} {
		if got := Match(c.ui, c.accept); got != c.want {
			t.Errorf("Match(%q, %q) = %q, want %q", c.ui, c.accept, got, c.want)
		}
	}
}

func TestT(t *testing.T) {
	if got := Of("de").T("page.title", "project", "Shop"); got != "Bei Shop anmelden" {
		t.Fatalf("got %q", got)
	}
	if got := Of("xx").T("page.title", "project", "Shop"); got != "Sign in to Shop" {
		t.Fatalf("unknown language: %q", got)
	}
}
