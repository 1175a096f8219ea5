package mailer

import "github.com/authd/authd"

// Direct executes the templates for m, past the cache: the reference the
// cache is held to.
func (t *Templates) Direct(m authd.Message) (Rendered, error) {
	return t.render(templateData(m))
}
