package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/authd/authd"
)

// projectEntry is one project of PROJECTS_FILE, JSON or YAML:
//
//   - id: shop
//     display_name: Example Shop
//     allowed_origins: [https://shop.example.com]
//     limits: {send_code_per_ip: 20/m, mails_per_project: 5000/h}
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

// loadProjects reads PROJECTS_FILE; each project's limits are applied over
// the global policy. Unknown keys are errors: a typo in a limit must not
// silently leave the default in force.
func loadProjects(path string, global authd.Policy) (*authd.Registry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// YAML is a superset of JSON: one path for both.
	js, err := yaml.YAMLToJSONStrict(raw) // a key given twice is an error
	if err != nil {
		// One line: the YAML parser's message spans several.
		return nil, fmt.Errorf("not JSON or YAML: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var entries []projectEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("want a list of {id, display_name, allowed_origins, limits}: %v", err)
	}
	projects := make([]authd.Project, 0, len(entries))
	for _, e := range entries {
		p := authd.Project{ID: e.ID, DisplayName: e.DisplayName, AllowedOrigins: e.AllowedOrigins, Policy: global}
		if v := e.Limits.MailsPerProject; v != "" {
			if p.Policy.MailsPerProject, err = authd.ParseRate(v); err != nil {
				return nil, fmt.Errorf("project %q: limits.mails_per_project: %v", e.ID, err)
			}
		}
		if v := e.Limits.ExpireSeconds; v != nil {
			if *v < 1 || *v > 86400 {
				return nil, fmt.Errorf("project %q: limits.expire_seconds: want 1 to 86400", e.ID)
			}
			p.Policy.CodeTTL = time.Duration(*v) * time.Second
		}
		if v := e.Limits.AttemptsLimit; v != nil {
			if *v < 1 || *v > 1000 {
				return nil, fmt.Errorf("project %q: limits.attempts_limit: want 1 to 1000", e.ID)
			}
			p.Policy.AttemptsPerCode = *v
		}
		if v := e.Limits.ResendSeconds; v != nil {
			if *v < 0 || *v > 86400 {
				return nil, fmt.Errorf("project %q: limits.resend_seconds: want 0 to 86400", e.ID)
			}
			p.Policy.ResendCooldown = time.Duration(*v) * time.Second
		}
		projects = append(projects, p)
	}
	return authd.NewRegistry(projects)
}
