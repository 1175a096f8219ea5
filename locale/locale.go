// Package locale is the catalogue of what the hosted sign-in says, in its
// pages and its mails: one JSON file per language (en.json, de.json,
// fr.json, es.json), a flat map of message ids to text, which a
// translator edits without touching code. {name} in a text is replaced by
// the value given for name. English is complete by test; a message another
// language lacks is said in English.
package locale

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"golang.org/x/text/language"
)

//go:embed *.json
var files embed.FS

// Default is the language when none asked for is offered.
const Default = "en"

var (
	catalogue = map[string]map[string]string{}
	tags      []language.Tag
	names     []string
	matcher   language.Matcher
)

func init() {
	entries, err := files.ReadDir(".")
	if err != nil {
		panic(err)
	}
	names = []string{Default} // first: the matcher's fallback
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), path.Ext(e.Name()))
		b, err := files.ReadFile(e.Name())
		if err != nil {
			panic(err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			panic(fmt.Sprintf("locale %s: %v", e.Name(), err))
		}
		catalogue[name] = m
		if name != Default {
			names = append(names, name)
		}
	}
	for _, n := range names {
		tags = append(tags, language.MustParse(n))
	}
	matcher = language.NewMatcher(tags)
}

// Languages returns the languages of the catalogue, Default first.
func Languages() []string { return append([]string(nil), names...) }

// Match returns the catalogue's language for a request: the first of
// uiLocales (OIDC's ui_locales, space-separated, in order of preference)
// the catalogue has, else the best match of acceptLanguage (an
// Accept-Language header), else Default.
func Match(uiLocales, acceptLanguage string) string {
	for _, l := range strings.Fields(uiLocales) {
		if t, err := language.Parse(l); err == nil {
			if _, i, c := matcher.Match(t); c >= language.High {
				return names[i]
			}
		}
	}
	if prefs, _, err := language.ParseAcceptLanguage(acceptLanguage); err == nil && len(prefs) > 0 {
		if _, i, c := matcher.Match(prefs...); c > language.No {
			return names[i]
		}
	}
	return Default
}

// Lang is one language of the catalogue.
type Lang string

// Of returns lang when the catalogue has it, Default otherwise.
func Of(lang string) Lang {
	if _, ok := catalogue[lang]; ok {
		return Lang(lang)
	}
	return Default
}

// T returns message id in l, with each {name} of args (name, value
// pairs) replaced. An id the catalogue lacks in l is said in English; one
// English lacks is returned as it is (a test holds English complete).
func (l Lang) T(id string, args ...any) string {
	s, ok := catalogue[string(l)][id]
	if !ok {
		if s, ok = catalogue[Default][id]; !ok {
			return id
		}
	}
	for i := 0; i+1 < len(args); i += 2 {
		s = strings.ReplaceAll(s, "{"+fmt.Sprint(args[i])+"}", fmt.Sprint(args[i+1]))
	}
	return s
}

// Missing lists, for each language, the ids English has and it lacks, and
// the ids it has that English does not (a typo).
func Missing() map[string][]string {
	out := map[string][]string{}
	for name, m := range catalogue {
		for id := range catalogue[Default] {
			if _, ok := m[id]; !ok {
				out[name] = append(out[name], "missing "+id)
			}
		}
		for id := range m {
			if _, ok := catalogue[Default][id]; !ok {
				out[name] = append(out[name], "unknown "+id)
			}
		}
	}
	return out
}
