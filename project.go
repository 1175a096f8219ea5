package authd

import (
	"fmt"
	"net/url"
	"strings"
)

// Project is one entry of the optional project registry (PROJECTS_FILE).
type Project struct {
	ID string
	// DisplayName is what mails show; never the raw project_id.
	DisplayName string
	// AllowedOrigins are the browser origins that may call authd for this
	// project (CORS). None by default.
	AllowedOrigins []string
	// Policy is the global policy with this project's own limits applied.
	Policy Policy
}

// Registry is the set of known projects. A nil *Registry knows every valid
// project_id: each gets the global policy and the service's name.
type Registry struct {
	byID    map[string]Project
	origins map[string]bool
}

// NewRegistry checks projects and indexes them.
func NewRegistry(projects []Project) (*Registry, error) {
	r := &Registry{byID: map[string]Project{}, origins: map[string]bool{}}
	for i, p := range projects {
		if !ValidProjectID(p.ID) {
			return nil, fmt.Errorf("project %d: id must be 1-64 characters of A-Z a-z 0-9 . _ -", i+1)
		}
		if _, dup := r.byID[p.ID]; dup {
			return nil, fmt.Errorf("project %q: listed twice", p.ID)
		}
		p.DisplayName = strings.TrimSpace(p.DisplayName)
		if p.DisplayName == "" {
			return nil, fmt.Errorf("project %q: display_name is required", p.ID)
		}
		if len(p.DisplayName) > 100 || strings.ContainsFunc(p.DisplayName, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("project %q: display_name must be one line of at most 100 bytes", p.ID)
		}
		for _, o := range p.AllowedOrigins {
			norm, err := NormalizeOrigin(o)
			if err != nil {
				return nil, fmt.Errorf("project %q: allowed_origins: %v", p.ID, err)
			}
			r.origins[norm] = true
		}
		r.byID[p.ID] = p
	}
	return r, nil
}

// Lookup returns the project named id.
func (r *Registry) Lookup(id string) (Project, bool) {
	if r == nil {
		return Project{}, false
	}
	p, ok := r.byID[id]
	return p, ok
}

// All returns every project of the registry (none for a nil one).
func (r *Registry) All() []Project {
	if r == nil {
		return nil
	}
	out := make([]Project, 0, len(r.byID))
	for _, p := range r.byID {
		out = append(out, p)
	}
	return out
}

// AllowsOrigin reports whether any project lets origin call authd from a
// browser. CORS preflights do not say which project they are for, so the
// union of all projects' origins is allowed.
func (r *Registry) AllowsOrigin(origin string) bool {
	if r == nil {
		return false
	}
	norm, err := NormalizeOrigin(origin)
	return err == nil && r.origins[norm]
}

// NormalizeOrigin returns scheme://host[:port], lowercased, as browsers send
// it in the Origin header.
func NormalizeOrigin(o string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin like https://app.example.com", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}
