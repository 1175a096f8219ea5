package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/httpapi"
)

// Config is authd's whole configuration, parsed and checked once at start
// (DESIGN.md §4) and passed down; nothing else reads the environment.
type Config struct {
	Dev bool // development mode: nothing external configured

	ProjectName string
	SecretKey   string
	WeakSecret  bool // ALLOW_WEAK_SECRET_KEY accepted a short SECRET_KEY
	MasterKey   []byte

	DatabaseURL  string // "" = SQLite in DataDir
	RedisURL     string // "" = in memory
	RedisCluster bool   // REDIS_CLUSTER: REDIS_URL names cluster nodes
	RedisPrefix  string // REDIS_KEY_PREFIX: lets deployments share a Redis
	DataDir      string

	MailBackend  string // "smtp" or "log"
	SMTPHost     string
	SMTPPort     int
	SMTPUser     string
	SMTPPassword string
	SMTPTLS      bool
	FromEmail    string
	FromName     string
	MailWorkers  int
	TemplatesDir string // EMAIL_TEMPLATES_DIR: "" = the embedded templates

	// MailClaimTimeout (MAIL_CLAIM_TIMEOUT) is how long a mail job claimed
	// by an instance that stopped renewing it stays invisible to the others.
	MailClaimTimeout time.Duration
	// MailRetryBackoff (MAIL_RETRY_BACKOFF) is the delay before a failed
	// mail's first retry, doubled per retry up to MailRetryMax
	// (MAIL_RETRY_MAX).
	MailRetryBackoff time.Duration
	MailRetryMax     time.Duration

	Policy authd.Policy
	// Projects is the PROJECTS_FILE registry; nil without one.
	Projects *authd.Registry

	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix

	Host      string
	Port      int
	LogLevel  slog.Level
	LogFormat string // "json" or "text"

	opsConfig // METRICS_ADDR, SHUTDOWN_* (ops.go)

	tokenConfig // AUTHD_ISSUER, TOKEN_*, JWKS_CACHE_SECONDS (tokens.go)
}

// Addr is the listen address.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// env reads variables from the process environment, then from .env.
type env struct {
	getenv func(string) string
	dotenv map[string]string
}

func newEnv(getenv func(string) string, dotenvPath string) (env, error) {
	e := env{getenv: getenv}
	if dotenvPath == "" {
		return e, nil
	}
	m, err := godotenv.Read(dotenvPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return e, fmt.Errorf("config: %s: %v", dotenvPath, err)
	}
	e.dotenv = m
	return e, nil
}

func (e env) get(key string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return e.dotenv[key]
}

func (e env) set(key string) bool { return e.get(key) != "" }

// configError is the one line start-up prints for a bad value: it names the
// variable, and never repeats a secret.
func configError(key, problem string) error {
	return fmt.Errorf("config: %s: %s", key, problem)
}

// placeholders are values copied from examples that must not run in
// production.
var placeholderPrefixes = []string{"change-me", "changeme", "change_me", "your-", "replace-me", "<"}

func isPlaceholder(v string) bool {
	l := strings.ToLower(strings.TrimSpace(v))
	switch l {
	case "secret", "secret-key", "secret_key", "password", "xxx":
		return true
	}
	for _, p := range placeholderPrefixes {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// loadConfig parses and checks the configuration. devSecrets may write the
// generated development secrets into the data directory.
func loadConfig(e env) (Config, error) {
	c := Config{
		ProjectName: e.get("PROJECT_NAME"),
		DataDir:     e.get("AUTHD_DATA_DIR"),
		FromEmail:   e.get("EMAILS_FROM_EMAIL"),
		FromName:    e.get("EMAILS_FROM_NAME"),
		SMTPHost:    e.get("SMTP_HOST"),
		SMTPUser:    e.get("SMTP_USER"),
		// The password is read as given; it is never logged.
		SMTPPassword: e.get("SMTP_PASSWORD"),
	}
	if c.ProjectName == "" {
		c.ProjectName = "Authentication Microservice"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.FromEmail == "" {
		c.FromEmail = "info@example.com"
	}
	if c.FromName == "" {
		c.FromName = "Auth Service"
	}
	if _, err := authd.NormalizeEmail(c.FromEmail); err != nil {
		return c, configError("EMAILS_FROM_EMAIL", "not a valid address")
	}
	if strings.ContainsAny(c.FromName, "\r\n") {
		return c, configError("EMAILS_FROM_NAME", "must be one line")
	}
	var err error

	// Stores.
	if c.DatabaseURL, err = databaseURL(e); err != nil {
		return c, err
	}
	if c.RedisURL, err = redisURL(e); err != nil {
		return c, err
	}
	if c.RedisCluster, err = boolVar(e, "REDIS_CLUSTER", false); err != nil {
		return c, err
	}
	c.RedisPrefix = e.get("REDIS_KEY_PREFIX")
	if c.RedisPrefix == "" {
		c.RedisPrefix = "authd:"
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		return c, configError("REDIS_KEY_PREFIX", "must not contain { or }")
	}
	c.Dev = c.DatabaseURL == "" && c.RedisURL == "" && c.SMTPHost == ""

	// Mail.
	if c.SMTPPort, err = intVar(e, "SMTP_PORT", 587, 1, 65535); err != nil {
		return c, err
	}
	if c.SMTPTLS, err = boolVar(e, "SMTP_TLS", true); err != nil {
		return c, err
	}
	switch mb := strings.ToLower(e.get("MAIL_BACKEND")); mb {
	case "":
		c.MailBackend = "log"
		if c.SMTPHost != "" {
			c.MailBackend = "smtp"
		} else if !c.Dev {
			return c, configError("SMTP_HOST", "not set, but a database or Redis is: codes would go nowhere (set MAIL_BACKEND=log to print them to the log on purpose)")
		}
	case "smtp":
		if c.SMTPHost == "" {
			return c, configError("SMTP_HOST", "required by MAIL_BACKEND=smtp")
		}
		c.MailBackend = mb
	case "log":
		c.MailBackend = mb
	default:
		return c, configError("MAIL_BACKEND", fmt.Sprintf("want smtp or log, got %q", mb))
	}
	c.TemplatesDir = e.get("EMAIL_TEMPLATES_DIR")
	if c.MailWorkers, err = intVar(e, "MAIL_WORKERS", 16, 1, 1024); err != nil {
		return c, err
	}
	if c.MailClaimTimeout, err = durationVar(e, "MAIL_CLAIM_TIMEOUT", 30*time.Second); err != nil {
		return c, err
	}
	if c.MailClaimTimeout < time.Second {
		return c, configError("MAIL_CLAIM_TIMEOUT", "must be at least 1s: claims are renewed every third of it")
	}
	if c.MailRetryBackoff, err = durationVar(e, "MAIL_RETRY_BACKOFF", 2*time.Second); err != nil {
		return c, err
	}
	if c.MailRetryMax, err = durationVar(e, "MAIL_RETRY_MAX", 30*time.Second); err != nil {
		return c, err
	}
	if c.MailRetryBackoff <= 0 || c.MailRetryMax < c.MailRetryBackoff {
		return c, configError("MAIL_RETRY_MAX", "want 0 < MAIL_RETRY_BACKOFF <= MAIL_RETRY_MAX")
	}

	// Policy.
	p := authd.DefaultPolicy()
	var secs int
	if secs, err = intVar(e, "OTP_EXPIRE_SECONDS", 300, 1, 86400); err != nil {
		return c, err
	}
	p.CodeTTL = time.Duration(secs) * time.Second
	if p.AttemptsPerCode, err = intVar(e, "OTP_ATTEMPTS_LIMIT", 5, 1, 1000); err != nil {
		return c, err
	}
	if secs, err = intVar(e, "OTP_RESEND_SECONDS", 60, 0, 86400); err != nil {
		return c, err
	}
	p.ResendCooldown = time.Duration(secs) * time.Second
	for _, r := range []struct {
		key string
		dst *authd.Rate
		def string
	}{
		{"LIMIT_SEND_CODE_PER_IP", &p.SendPerIP, "10/m"},
		{"LIMIT_VERIFY_CODE_PER_IP", &p.VerifyPerIP, "60/m"},
		{"LIMIT_CODES_PER_ADDRESS", &p.CodesPerAddress, "5/h"},
		{"LIMIT_FAILURES_PER_ADDRESS", &p.FailuresPerAddress, "10/h"},
		{"LIMIT_MAILS_PER_PROJECT", &p.MailsPerProject, "0"},
	} {
		v := e.get(r.key)
		if v == "" {
			v = r.def
		}
		if *r.dst, err = authd.ParseRate(v); err != nil {
			return c, configError(r.key, err.Error())
		}
	}
	c.Policy = p
	if path := e.get("PROJECTS_FILE"); path != "" {
		if c.Projects, err = loadProjects(path, p); err != nil {
			return c, configError("PROJECTS_FILE", err.Error())
		}
	}

	if c.TrustedProxies, err = httpapi.ParseTrustedProxies(e.get("TRUSTED_PROXIES")); err != nil {
		return c, configError("TRUSTED_PROXIES", "want CIDRs or addresses separated by commas, e.g. 10.0.0.0/8,192.168.1.10")
	}

	// Listener and logs.
	c.Host = e.get("HOST")
	if c.Host == "" {
		c.Host = "0.0.0.0"
		if c.Dev {
			c.Host = "127.0.0.1"
		}
	}
	if c.Port, err = intVar(e, "PORT", 8013, 0, 65535); err != nil {
		return c, err
	}
	switch strings.ToLower(e.get("LOG_LEVEL")) {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		return c, configError("LOG_LEVEL", "want debug, info, warn or error")
	}
	switch f := strings.ToLower(e.get("LOG_FORMAT")); f {
	case "":
		c.LogFormat = "json"
		if c.Dev {
			c.LogFormat = "text"
		}
	case "json", "text":
		c.LogFormat = f
	default:
		return c, configError("LOG_FORMAT", "want json or text")
	}

	if c.opsConfig, err = loadOpsConfig(e); err != nil {
		return c, err
	}

	// Secrets last: development mode may generate them into DataDir.
	if err := c.loadSecrets(e); err != nil {
		return c, err
	}
	if c.tokenConfig, err = loadTokenConfig(e, c); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) loadSecrets(e env) error {
	sk, mk := e.get("SECRET_KEY"), e.get("AUTHD_MASTER_KEY")
	if c.Dev {
		var err error
		if sk == "" {
			if sk, err = devSecret(c.DataDir, "secret_key"); err != nil {
				return configError("SECRET_KEY", "not set, and no development key could be kept in AUTHD_DATA_DIR: "+err.Error())
			}
		}
		if mk == "" {
			if mk, err = devSecret(c.DataDir, "master_key"); err != nil {
				return configError("AUTHD_MASTER_KEY", "not set, and no development key could be kept in AUTHD_DATA_DIR: "+err.Error())
			}
		}
	}
	weakOK, err := boolVar(e, "ALLOW_WEAK_SECRET_KEY", false)
	if err != nil {
		return err
	}
	switch {
	case sk == "":
		return configError("SECRET_KEY", "required outside development mode (32+ random bytes; it signs the v1 proofs)")
	case isPlaceholder(sk):
		return configError("SECRET_KEY", "is a placeholder from an example: set 32+ random bytes")
	case len(sk) < 32 && !weakOK:
		return configError("SECRET_KEY", fmt.Sprintf("too short (%d bytes, want 32+); ALLOW_WEAK_SECRET_KEY=true accepts it if your consumers already hold it", len(sk)))
	case len(sk) < 32:
		c.WeakSecret = true
	}
	c.SecretKey = sk
	if mk == "" {
		return configError("AUTHD_MASTER_KEY", "required outside development mode (32+ random bytes, base64 or hex)")
	}
	if isPlaceholder(mk) {
		return configError("AUTHD_MASTER_KEY", "is a placeholder from an example: set 32+ random bytes, base64 or hex")
	}
	key, ok := decodeKey(mk)
	if !ok {
		return configError("AUTHD_MASTER_KEY", "want 32+ random bytes, base64 or hex encoded (e.g. openssl rand -base64 32)")
	}
	c.MasterKey = key
	return nil
}

// decodeKey reads a key given in hex or base64 (standard or URL alphabet,
// padded or not) and accepts it when it holds 32 bytes or more.
func decodeKey(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) >= 32 {
		return b, true
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) >= 32 {
			return b, true
		}
	}
	return nil, false
}

// devSecret returns the development secret kept in dir/name, making it on
// first use: development mode survives restarts with the same keys.
func devSecret(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

func databaseURL(e env) (string, error) {
	if u := e.get("DATABASE_URL"); u != "" {
		if _, err := url.Parse(u); err != nil || !(strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")) {
			return "", configError("DATABASE_URL", "want postgres://user:password@host:port/db")
		}
		return u, nil
	}
	host := e.get("POSTGRES_SERVER")
	if host == "" {
		return "", nil
	}
	port, err := intVar(e, "POSTGRES_PORT", 5432, 1, 65535)
	if err != nil {
		return "", err
	}
	user, pass, db := e.get("POSTGRES_USER"), e.get("POSTGRES_PASSWORD"), e.get("POSTGRES_DB")
	if user == "" {
		user = "postgres"
	}
	if pass == "" {
		pass = "postgres"
	}
	if db == "" {
		db = "auth_db"
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, pass), Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + db}
	return u.String(), nil
}

func redisURL(e env) (string, error) {
	if u := e.get("REDIS_URL"); u != "" {
		if _, err := url.Parse(u); err != nil || !(strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://") || strings.HasPrefix(u, "unix://")) {
			return "", configError("REDIS_URL", "want redis://[user:password@]host:port/db")
		}
		return u, nil
	}
	host := e.get("REDIS_HOST")
	if host == "" {
		return "", nil
	}
	port, err := intVar(e, "REDIS_PORT", 6379, 1, 65535)
	if err != nil {
		return "", err
	}
	db, err := intVar(e, "REDIS_DB", 0, 0, 1<<20)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "redis", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/" + strconv.Itoa(db)}
	if p := e.get("REDIS_PASSWORD"); p != "" {
		u.User = url.UserPassword("", p)
	}
	return u.String(), nil
}

func intVar(e env, key string, def, min, max int) (int, error) {
	v := strings.TrimSpace(e.get(key))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, configError(key, fmt.Sprintf("want an integer, got %q", v))
	}
	if n < min || n > max {
		return 0, configError(key, fmt.Sprintf("want %d to %d, got %d", min, max, n))
	}
	return n, nil
}

func boolVar(e env, key string, def bool) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(e.get(key))) {
	case "":
		return def, nil
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, configError(key, "want true or false")
}
