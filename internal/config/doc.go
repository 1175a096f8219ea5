package config

import (
	"strings"
)

// Markdown is the README's configuration table: every setting, in the
// table's order, with its default and meaning.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range settings {
		def := s.shown
		switch {
		case def != "":
		case s.def == "":
			def = "unset"
		default:
			def = "`" + s.def + "`"
		}
		b.WriteString("| `" + s.name + "` | " + def + " | " + s.help + " |\n")
	}
	return b.String()
}

// Names lists every variable authd reads, in the table's order.
func Names() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.name
	}
	return out
}

// String names what a command reads, for its --help.
func (n Need) String() string {
	switch n {
	case Nothing:
		return "nothing"
	case All:
		return "the whole configuration, checked"
	}
	var out []string
	for _, g := range []struct {
		n    Need
		what string
	}{
		{Database, "the database (DATABASE_URL or POSTGRES_*; SQLite in AUTHD_DATA_DIR without them)"},
		{Redis, "Redis (REDIS_URL or REDIS_*)"}, {ProofKey, "SECRET_KEY"}, {MasterKey, "AUTHD_MASTER_KEY"},
		{Mail, "mail (SMTP_*, MAIL_*)"}, {Policy, "the limits"}, {HTTP, "HOST, PORT"},
		{Tokens, "the token settings (TOKEN_*, JWKS_CACHE_SECONDS)"}, {Issuer, "AUTHD_ISSUER"},
	} {
		if n&g.n != 0 {
			out = append(out, g.what)
		}
	}
	return strings.Join(append(out, "LOG_*"), ", ")
}
