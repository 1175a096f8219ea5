package mailer

import (
	"strings"
	"sync"
	"time"
)

// renderCache executes the templates once per mail of a kind (everything
// a template sees but the code: project name, lifetime, language...)
// rather than once per mail: a mail is then its kind's rendering with the
// code put in. A kind is cached only when that is provably the same as
// executing the templates: at its first mail they are executed twice,
// with two placeholder codes and expiry times far apart, and the two
// renderings must differ by the code alone. Templates that name
// .ExpiresAt, or that transform the code, are therefore executed for
// every mail, as are kinds past the cache's bound.
type renderCache struct {
	once   sync.Once
	expiry bool // a template names .ExpiresAt: every mail is its own kind

	mu    sync.RWMutex
	kinds map[TemplateData]*renderedKind
}

// renderedKind is a kind's rendering split around its code; nil parts
// when the kind is not cacheable.
type renderedKind struct {
	subject, text, html []string

	encodeOnce sync.Once
	encoded    *encodedKind // its parts as they go in a mail (encodeKind); nil: encoded per mail
}

// encoding returns k's parts as they go in a mail, encoded at its first
// mail; nil when they must be encoded per mail.
func (k *renderedKind) encoding() *encodedKind {
	k.encodeOnce.Do(func() { k.encoded = encodeKind(k) })
	return k.encoded
}

// maxKinds bounds the cache: a kind per project and language is far
// under it; a field that differs per mail fills it, and then the
// templates are executed for every mail, as without a cache.
const maxKinds = 1024

// Two placeholders no real code of a kind can be confused with: the check
// below fails if a rendering holds either anywhere else.
const placeholderA, placeholderB = "918273", "364510"

// expiryShift moves a placeholder's expiry by more than every unit a
// template could print of it.
const expiryShift = 400*24*time.Hour + 13*time.Hour + 7*time.Minute + 11*time.Second

func (c *renderCache) render(t *Templates, d TemplateData) (Rendered, error) {
	k, ok, err := c.kind(t, d)
	if err != nil {
		return Rendered{}, err
	}
	if !ok {
		return t.render(d)
	}
	return Rendered{
		Subject: strings.Join(k.subject, d.Code), Text: strings.Join(k.text, d.Code), HTML: strings.Join(k.html, d.Code),
	}, nil
}

// kind returns d's kind, cached; ok is false when d's mail is rendered on
// its own (the templates name .ExpiresAt, the cache is full, or the kind
// is not provably its rendering with the code put in).
func (c *renderCache) kind(t *Templates, d TemplateData) (k *renderedKind, ok bool, err error) {
	c.once.Do(func() {
		var srcs []string
		for _, tt := range append(t.subject.Templates(), t.text.Templates()...) {
			if tt.Tree != nil {
				srcs = append(srcs, tt.Root.String())
			}
		}
		for _, tt := range t.html.Templates() {
			if tt.Tree != nil {
				srcs = append(srcs, tt.Tree.Root.String())
			}
		}
		for _, src := range srcs {
			c.expiry = c.expiry || strings.Contains(src, "ExpiresAt")
		}
		c.kinds = make(map[TemplateData]*renderedKind)
	})
	if c.expiry {
		return nil, false, nil
	}
	key := d
	key.Code, key.ExpiresAt = "", time.Time{}
	c.mu.RLock()
	k, ok = c.kinds[key]
	full := len(c.kinds) >= maxKinds
	c.mu.RUnlock()
	if !ok {
		if full {
			return nil, false, nil
		}
		if k, err = kindOf(t, d); err != nil {
			return nil, false, err
		}
		c.mu.Lock()
		if len(c.kinds) < maxKinds {
			c.kinds[key] = k
		}
		c.mu.Unlock()
	}
	if k.subject == nil {
		return nil, false, nil
	}
	return k, true, nil
}

// kindOf renders d's kind with the placeholders and checks that the two
// renderings differ by the code alone.
func kindOf(t *Templates, d TemplateData) (*renderedKind, error) {
	a, b := d, d
	a.Code, b.Code = placeholderA, placeholderB
	b.ExpiresAt = d.ExpiresAt.Add(expiryShift)
	ra, err := t.render(a)
	if err != nil {
		return nil, err
	}
	rb, err := t.render(b)
	if err != nil {
		return nil, err
	}
	same := func(x, y string) bool { return strings.ReplaceAll(x, placeholderA, placeholderB) == y }
	if !same(ra.Subject, rb.Subject) || !same(ra.Text, rb.Text) || !same(ra.HTML, rb.HTML) ||
		strings.Contains(ra.Subject+ra.Text+ra.HTML, placeholderB) {
		return &renderedKind{}, nil
	}
	return &renderedKind{
		subject: strings.Split(ra.Subject, placeholderA),
		text:    strings.Split(ra.Text, placeholderA),
		html:    strings.Split(ra.HTML, placeholderA),
	}, nil
}
