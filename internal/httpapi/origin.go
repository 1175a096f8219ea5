package httpapi

import (
	"net/http"

	"github.com/authd/authd"
)

// origins refuses cross-origin browser requests to the API unless the
// origin is registered for the request's project: a web page must not be
// able to turn its visitors' browsers into senders, each from its own IP,
// past the per-IP limits. It is net/http's CrossOriginProtection
// (Sec-Fetch-Site, or Origin against Host), whose trusted origins are one
// set: so one per project, chosen once the body has named the project.
// Requests without those headers (servers, curl) are not a browser's and
// pass. Sec-Fetch-Site: same-site is cross-origin too: a sibling subdomain
// (app.example.com calling auth.example.com) must be registered.
type origins struct {
	byProject map[string]*http.CrossOriginProtection
	any       *http.CrossOriginProtection // every registered origin
	none      *http.CrossOriginProtection // no registry, or an unknown project
}

func newOrigins(reg *authd.Registry) *origins {
	o := &origins{byProject: map[string]*http.CrossOriginProtection{}, any: http.NewCrossOriginProtection(), none: http.NewCrossOriginProtection()}
	for _, p := range reg.All() {
		cop := http.NewCrossOriginProtection()
		for _, origin := range p.AllowedOrigins {
			// NewRegistry checked the form; CrossOriginProtection takes it
			// as scheme://host[:port].
			if norm, err := authd.NormalizeOrigin(origin); err == nil {
				cop.AddTrustedOrigin(norm)
				o.any.AddTrustedOrigin(norm)
			}
		}
		o.byProject[p.ID] = cop
	}
	return o
}

// forProject refuses r when it is a cross-origin browser request from an
// origin the project does not list (any, for an unknown project or ""). It
// runs before anything is counted: a refused request changes nothing.
func (o *origins) forProject(r *http.Request, project string) error {
	cop, ok := o.byProject[project]
	if !ok {
		cop = o.none
	}
	return refuseCrossOrigin(cop, r)
}

// forBody is forProject for the project a body names in field: a request
// that is no cross-origin browser request (servers, curl, same-origin)
// passes every project's check, so the body is not looked into for it.
func (o *origins) forBody(r *http.Request, body []byte, field string) error {
	if o.none.Check(r) == nil {
		return nil
	}
	return o.forProject(r, projectOf(body, field))
}

// forAny is forProject for a request about no one project: any
// registered origin may make it.
func (o *origins) forAny(r *http.Request) error { return refuseCrossOrigin(o.any, r) }

func refuseCrossOrigin(cop *http.CrossOriginProtection, r *http.Request) error {
	if cop.Check(r) != nil {
		return &apiError{status: http.StatusForbidden, Detail: msgCrossOrigin}
	}
	return nil
}
