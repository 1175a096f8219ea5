package config

import (
	"net"
	"strconv"
	"strings"
)

// Markdown is the README's configuration table: every setting, in the
// table's order, with its default and meaning.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| variable | default | range | meaning |\n|---|---|---|---|\n")
	for _, s := range settings {
		def := s.shown
		switch {
		case def != "":
		case s.def == "":
			def = "unset"
		default:
			def = "`" + s.def + "`"
		}
		b.WriteString("| `" + s.name + "` | " + def + " | " + s.parse.rng + " | " + s.help + " |\n")
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

// Warnings are what start-up says about a configuration that runs but is
// weaker than it looks, one line each.
func (c Config) Warnings() []string {
	var out []string
	if c.Dev {
		out = append(out, "DEVELOPMENT MODE: nothing external configured. Users in SQLite under "+c.DataDir+
			", codes and limits in memory (lost on restart), mail WRITTEN TO THIS LOG instead of sent. "+
			"Set POSTGRES_SERVER, REDIS_HOST and SMTP_HOST for production.")
	}
	if c.WeakSecret {
		out = append(out, "SECRET_KEY is shorter than 32 bytes (accepted by ALLOW_WEAK_SECRET_KEY): anyone who guesses it can forge v1 proofs")
	}
	if c.MailBackend == "smtp" && !c.SMTPTLS {
		out = append(out, "SMTP_TLS=false: mail, codes included, travels to the SMTP server unencrypted")
		if c.SMTPUser != "" {
			out = append(out, "SMTP_USER is set with SMTP_TLS=false: the SMTP password travels in clear")
		}
	}
	if c.MailBackend == "log" && !c.Dev {
		out = append(out, "MAIL_BACKEND=log: codes are written to the log, not mailed")
	}
	if c.MetricsPublic() {
		out = append(out, "METRICS_ADDR is the main listener: /metrics is public, to anyone who can reach authd (its verify outcomes are merged)")
	}
	if c.Projects == nil {
		out = append(out, "no PROJECTS_FILE: project_id is the caller's choice, so per-project limits bound nothing; what authd mails in total is bounded by LIMIT_MAILS_TOTAL="+c.Policy.MailsTotal.String())
	}
	return out
}

// MetricsPublic reports whether METRICS_ADDR is the main listener's
// address: /metrics is then served on the public port.
func (c Config) MetricsPublic() bool {
	host, port, err := net.SplitHostPort(c.MetricsAddr)
	if err != nil || port != strconv.Itoa(c.Port) {
		return false
	}
	any := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return host == c.Host || any(host) || any(c.Host)
}

// Backends names the stores the configuration picks, for the start-up
// line.
func (c Config) Backends() (users, codes string) {
	users, codes = "sqlite", "memory"
	if c.DatabaseURL != "" {
		users = "postgres"
	}
	if c.RedisURL != "" {
		codes = "redis"
	}
	return users, codes
}
