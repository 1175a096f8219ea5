package authd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
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

// projectEntry is one project of a registry file (PROJECTS_FILE):
//
//   - id: shop
//     display_name: Example Shop
//     allowed_origins: [https://shop.example.com]
//     limits: {mails_per_project: 5000/h, resend_seconds: 30}
type projectEntry struct {
	ID             string   `json:"id"`
	DisplayName    string   `json:"display_name"`
	AllowedOrigins []string `json:"allowed_origins"`
	// Limits are the ones kept per project. The per-IP and per-address
	// budgets are shared by all projects (one counter each, so that a
	// caller cannot pick the loosest project_id): they are global only.
	Limits struct {
		MailsPerProject string `json:"mails_per_project"`
		ExpireSeconds   *int   `json:"expire_seconds"`
		AttemptsLimit   *int   `json:"attempts_limit"`
		ResendSeconds   *int   `json:"resend_seconds"`
	} `json:"limits"`
}

// ParseRegistry reads a registry file given as JSON (a list of {id,
// display_name, allowed_origins, limits}); each project's limits are
// applied over the global policy. Unknown keys are errors: a typo in a
// limit must not silently leave the default in force.
func ParseRegistry(data []byte, global Policy) (*Registry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var entries []projectEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("want a list of {id, display_name, allowed_origins, limits}: %v", err)
	}
	seconds := func(id, name string, v *int, lo, hi int) (time.Duration, error) {
		if *v < lo || *v > hi {
			return 0, fmt.Errorf("project %q: limits.%s: want %d to %d", id, name, lo, hi)
		}
		return time.Duration(*v) * time.Second, nil
	}
	projects := make([]Project, 0, len(entries))
	for _, e := range entries {
		p := Project{ID: e.ID, DisplayName: e.DisplayName, AllowedOrigins: e.AllowedOrigins, Policy: global}
		var err error
		if v := e.Limits.MailsPerProject; v != "" {
			if p.Policy.MailsPerProject, err = ParseRate(v); err != nil {
				return nil, fmt.Errorf("project %q: limits.mails_per_project: %v", e.ID, err)
			}
		}
		if v := e.Limits.ExpireSeconds; v != nil {
			if p.Policy.CodeTTL, err = seconds(e.ID, "expire_seconds", v, 1, 86400); err != nil {
				return nil, err
			}
		}
		if v := e.Limits.AttemptsLimit; v != nil {
			if *v < 1 || *v > 1000 {
				return nil, fmt.Errorf("project %q: limits.attempts_limit: want 1 to 1000", e.ID)
			}
			p.Policy.AttemptsPerCode = *v
		}
		if v := e.Limits.ResendSeconds; v != nil {
			if p.Policy.ResendCooldown, err = seconds(e.ID, "resend_seconds", v, 0, 86400); err != nil {
				return nil, err
			}
		}
		projects = append(projects, p)
	}
	return NewRegistry(projects)
}
