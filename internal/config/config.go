// Package config is authd's configuration: every environment variable it
// reads, in one table (settings) with its default, range and meaning,
// parsed and checked once at start into a Config that cmd/authd passes
// down. Nothing else in authd reads the environment. The README's
// configuration table is made from the same table (Markdown).
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"sigs.k8s.io/yaml"

	"github.com/authd/authd"
)

// Config is authd's whole configuration (DESIGN.md §4). A command fills
// only the parts it needs (see Need).
type Config struct {
	Dev bool // development mode: nothing external configured

	ProjectName string
	SecretKey   string
	WeakSecret  bool // ALLOW_WEAK_SECRET_KEY accepted a short SECRET_KEY
	MasterKey   []byte
	// PreviousMasterKeys are AUTHD_MASTER_KEY_PREVIOUS's, newest first.
	PreviousMasterKeys [][]byte

	DatabaseURL  string // "" = SQLite in DataDir
	DataDir      string
	RedisURL     string // "" = in memory
	RedisCluster bool   // REDIS_URL names cluster nodes
	RedisPrefix  string
	// RedisWaitReplicas > 0: a send-code waits for that many replicas to
	// acknowledge its write (Redis WAIT), at most RedisWaitTimeout.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration

	// PostgresPoolSize and RedisPoolSize bound each pool's connections
	// (a pool_max_conns / pool_size in the URL wins).
	PostgresPoolSize, RedisPoolSize int

	MailBackend                    string // "smtp" or "log"
	SMTPHost, SMTPUser             string
	SMTPPassword                   string // never logged
	SMTPPort                       int
	SMTPTLS                        bool
	FromEmail, FromName            string
	TemplatesDir                   string // "" = the embedded templates
	MailWorkers                    int
	MailClaimTimeout               time.Duration
	MailRetryBackoff, MailRetryMax time.Duration
	MailRetryMaxAttempts           int
	MailMaxLag                     time.Duration // send-code 503 while mail is later than this; 0: never

	Policy         authd.Policy
	Projects       *authd.Registry // PROJECTS_FILE; nil without one
	TrustedProxies []netip.Prefix

	Host      string
	Port      int
	LogLevel  slog.Level
	LogFormat string // "json" or "text"

	MetricsAddr     string        // /metrics's listener; MetricsPublic: the main one
	ShutdownTimeout time.Duration // bound on in-flight requests at shutdown
	ShutdownDelay   time.Duration // readiness 503 before the listener closes
	MaxInflight     int           // auth requests served at once; 0: no bound
	RequestTimeout  time.Duration // each auth request's deadline

	Issuer       string // the tokens' iss and the base of jwks_uri
	TokenTTL     time.Duration
	TokenAlg     string // EdDSA or HS256
	HS256Secret  []byte
	TokenKeyFile string
	JWKSMaxAge   time.Duration

	// Raw values the checks at the end of loading turn into the above.
	pg                                            struct{ host, user, pass, db, port string }
	redis                                         struct{ host, port, db, pass string }
	masterRaw, previousRaw, mailBackendRaw, hsRaw string
	allowWeak                                     bool
}

// Addr is the listen address.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Need is what a command needs of the configuration: each setting is
// read, and checked, only by the commands that need one of its groups.
type Need uint16

const (
	Database  Need = 1 << iota // the users and keys database
	Redis                      // the code store
	ProofKey                   // SECRET_KEY
	MasterKey                  // AUTHD_MASTER_KEY
	Mail                       // SMTP and the delivery worker
	Policy                     // codes and limits
	HTTP                       // the listener
	Tokens                     // the v2 tokens and their keys
	Issuer                     // AUTHD_ISSUER

	All     = Issuer<<1 - 1
	Nothing = Need(1 << 15) // a command that reads no configuration
)

// A setting is one environment variable. The table below is the one place
// where a name, its default, its range and its meaning are written: the
// parser walks it, the README's configuration table is made from it
// (TestReadmeConfigTable), and the policy's defaults come from
// authd.DefaultPolicy through it.
type setting struct {
	name  string
	def   string // parsed when the variable is unset; "" for none
	shown string // the README's default when def does not say it all
	need  Need   // the groups that read it; 0: every command (LOG_*)
	// secret values are taken as given (not trimmed) and never echoed.
	secret bool
	help   string
	parse  parser
}

// parser reads one setting's value into a Config, and says what values it
// takes (the README table's range).
type parser struct {
	rng   string
	apply func(c *Config, v string) error
}

// The parsers of the limits a project of PROJECTS_FILE may set for
// itself: the table's, and each project's (loadProjects).
var (
	parseExpire          = seconds(1, 86400, func(c *Config, d time.Duration) { c.Policy.CodeTTL = d })
	parseAttempts        = integer(1, 1000, func(c *Config, n int) { c.Policy.AttemptsPerCode = n })
	parseResend          = seconds(0, 86400, func(c *Config, d time.Duration) { c.Policy.ResendCooldown = d })
	parseMailsPerProject = rate(func(c *Config, r authd.Rate) { c.Policy.MailsPerProject = r })
)

// DefaultPolicy is the policy of DESIGN.md §2 as the table's defaults
// write it: what an unset LIMIT_*, OTP_* gives.
func DefaultPolicy() authd.Policy {
	c, err := load(env{getenv: func(string) string { return "" }}, Policy)
	if err != nil {
		panic("config: the table's own defaults do not parse: " + err.Error()) // a bug in the table
	}
	return c.Policy
}

var settings = []setting{
	{name: "PROJECT_NAME", def: "Authentication Microservice", need: HTTP | Mail, help: "the root answer's name; the name in mails",
		parse: text(func(c *Config, v string) { c.ProjectName = v })},
	{name: "SECRET_KEY", secret: true, shown: "generated in development", need: ProofKey, help: "signs the v1 proofs; every consumer holds it. 32+ bytes; a placeholder stops start-up",
		parse: text(func(c *Config, v string) { c.SecretKey = v })},
	{name: "ALLOW_WEAK_SECRET_KEY", def: "false", need: ProofKey, help: "accept a SECRET_KEY under 32 bytes (consumers already hold it), with a warning at every start",
		parse: boolean(func(c *Config, v bool) { c.allowWeak = v })},
	{name: "AUTHD_MASTER_KEY", secret: true, shown: "generated in development", need: MasterKey, help: "authd's own secret, never shared: 32+ random bytes, base64 or hex. The keys for code hashing, address keys and encryption are derived from it with HKDF",
		parse: text(func(c *Config, v string) { c.masterRaw = v })},
	{name: "AUTHD_MASTER_KEY_PREVIOUS", secret: true, need: MasterKey, help: "while rotating `AUTHD_MASTER_KEY`: the old key (or several, comma-separated, newest first). What they sealed still opens, and the data key they wrap keeps live codes and budgets; nothing new is sealed under them. Remove it after `authd keys reseal` (README, \"Rotating the master key\")",
		parse: text(func(c *Config, v string) { c.previousRaw = v })},
	{name: "AUTHD_ISSUER", shown: "`http://localhost:<PORT>` in development; required otherwise", need: Issuer, help: "authd's public URL: the tokens' `iss` and the base of `jwks_uri`. Never taken from a request's Host header",
		parse: text(func(c *Config, v string) { c.Issuer = v })},
	{name: "TOKEN_TTL_SECONDS", def: "900", need: Tokens, help: "the v2 token's lifetime (`exp - iat`)",
		parse: seconds(30, 86400, func(c *Config, d time.Duration) { c.TokenTTL = d })},
	{name: "TOKEN_ALG", def: "EdDSA", need: Tokens, help: "`EdDSA` (Ed25519: keys in the database, private halves encrypted under a key derived from `AUTHD_MASTER_KEY`, public halves published) or `HS256` (a shared secret)",
		parse: oneOf([]string{"EdDSA", "HS256"}, func(c *Config, v string) { c.TokenAlg = v })},
	{name: "TOKEN_HS256_SECRET", secret: true, need: Tokens, help: "the HS256 secret (`TOKEN_ALG=HS256` only): 32+ bytes, never published, must not be `SECRET_KEY`",
		parse: text(func(c *Config, v string) { c.hsRaw = v })},
	{name: "TOKEN_KEY_FILE", need: Tokens, help: "Ed25519 keys from a PEM file (PKCS #8) instead of the database: the first private key signs, every key is published; re-read every 2 s",
		parse: text(func(c *Config, v string) { c.TokenKeyFile = v })},
	{name: "JWKS_CACHE_SECONDS", def: "300", need: Tokens, help: "`Cache-Control: max-age` of `/.well-known/jwks.json`, and the default `--delay` of `authd keys rotate`",
		parse: seconds(0, 86400, func(c *Config, d time.Duration) { c.JWKSMaxAge = d })},
	{name: "DATABASE_URL", need: Database, help: "the whole PostgreSQL URL; wins over `POSTGRES_*`",
		parse: urlOf("postgres://user:password@host:port/db", []string{"postgres", "postgresql"}, func(c *Config, v string) { c.DatabaseURL = v })},
	{name: "POSTGRES_SERVER", need: Database, help: "PostgreSQL's host; PostgreSQL is used when it or `DATABASE_URL` is set",
		parse: text(func(c *Config, v string) { c.pg.host = v })},
	{name: "POSTGRES_USER", def: "postgres", need: Database, help: "PostgreSQL's user",
		parse: text(func(c *Config, v string) { c.pg.user = v })},
	{name: "POSTGRES_PASSWORD", secret: true, def: "postgres", need: Database, help: "PostgreSQL's password",
		parse: text(func(c *Config, v string) { c.pg.pass = v })},
	{name: "POSTGRES_DB", def: "auth_db", need: Database, help: "PostgreSQL's database",
		parse: text(func(c *Config, v string) { c.pg.db = v })},
	{name: "POSTGRES_PORT", def: "5432", need: Database, help: "PostgreSQL's port",
		parse: integer(1, 65535, func(c *Config, n int) { c.pg.port = strconv.Itoa(n) })},
	{name: "POSTGRES_POOL_SIZE", def: "16", need: Database, help: "PostgreSQL connections per instance at most (pgx's own default, `max(4, CPUs)`, held verify-code to a fraction of what PostgreSQL serves); verify-code's upsert is the only hot use, and the upserts of concurrent verifications share statements. Keep instances × this under the server's `max_connections`. A `pool_max_conns` in `DATABASE_URL` wins",
		parse: integer(1, 10000, func(c *Config, n int) { c.PostgresPoolSize = n })},
	{name: "AUTHD_DATA_DIR", def: "./data", need: Database | ProofKey | MasterKey, help: "the SQLite database and the development secrets when no PostgreSQL is set",
		parse: text(func(c *Config, v string) { c.DataDir = v })},
	{name: "REDIS_URL", need: Redis, help: "the whole Redis URL; wins over `REDIS_*`; a `master_name` query parameter means Sentinel",
		parse: urlOf("redis://[user:password@]host:port/db", []string{"redis", "rediss", "unix"}, func(c *Config, v string) { c.RedisURL = v })},
	{name: "REDIS_HOST", need: Redis, help: "Redis's host; Redis is used when it or `REDIS_URL` is set",
		parse: text(func(c *Config, v string) { c.redis.host = v })},
	{name: "REDIS_PORT", def: "6379", need: Redis, help: "Redis's port",
		parse: integer(1, 65535, func(c *Config, n int) { c.redis.port = strconv.Itoa(n) })},
	{name: "REDIS_DB", def: "0", need: Redis, help: "Redis's database number",
		parse: integer(0, 1<<20, func(c *Config, n int) { c.redis.db = strconv.Itoa(n) })},
	{name: "REDIS_PASSWORD", secret: true, need: Redis, help: "Redis's password",
		parse: text(func(c *Config, v string) { c.redis.pass = v })},
	{name: "REDIS_CLUSTER", def: "false", need: Redis, help: "`REDIS_URL` names Redis Cluster nodes (more as `addr` query parameters)",
		parse: boolean(func(c *Config, v bool) { c.RedisCluster = v })},
	{name: "REDIS_KEY_PREFIX", def: "authd:", need: Redis, help: "lets several deployments share one Redis",
		parse: custom("no { or }", func(c *Config, v string) error {
			if strings.ContainsAny(v, "{}") {
				return errors.New("must not contain { or }")
			}
			c.RedisPrefix = v
			return nil
		})},
	{name: "REDIS_POOL_SIZE", def: "64", need: Redis, help: "Redis connections per instance (per node of a cluster) at most, opened as needed (go-redis's own default is 10 per CPU): each request in flight and each of the `MAIL_WORKERS` holds one for a round trip. A `pool_size` in `REDIS_URL` wins",
		parse: integer(1, 100000, func(c *Config, n int) { c.RedisPoolSize = n })},
	{name: "REDIS_WAIT_REPLICAS", def: "0", need: Redis, help: "send-code answers 200 only once this many replicas have acknowledged the code and its mail job (Redis `WAIT`, on the node that took the write), else 503 with the code kept; narrows what a failover can lose, does not make a write durable: see [Redis replication](#redis-replication). `0`: off",
		parse: integer(0, 16, func(c *Config, n int) { c.RedisWaitReplicas = n })},
	{name: "REDIS_WAIT_TIMEOUT", def: "100ms", need: Redis, help: "how long a send-code waits for those acknowledgements: the most `REDIS_WAIT_REPLICAS` adds to a send-code when a replica lags or is down",
		parse: durationUpTo(time.Millisecond, time.Second, func(c *Config, d time.Duration) { c.RedisWaitTimeout = d })},
	{name: "SMTP_HOST", need: Mail, help: "the SMTP server",
		parse: text(func(c *Config, v string) { c.SMTPHost = v })},
	{name: "SMTP_PORT", def: "587", need: Mail, help: "the SMTP server's port; 465 means implicit TLS",
		parse: integer(1, 65535, func(c *Config, n int) { c.SMTPPort = n })},
	{name: "SMTP_USER", need: Mail, help: "AUTH PLAIN/LOGIN when set",
		parse: text(func(c *Config, v string) { c.SMTPUser = v })},
	{name: "SMTP_PASSWORD", secret: true, need: Mail, help: "the SMTP password; never logged",
		parse: text(func(c *Config, v string) { c.SMTPPassword = v })},
	{name: "SMTP_TLS", def: "true", need: Mail, help: "STARTTLS required; `false` allows plain SMTP (a local relay, a mail catcher) with a warning",
		parse: boolean(func(c *Config, v bool) { c.SMTPTLS = v })},
	{name: "EMAILS_FROM_EMAIL", def: "info@example.com", need: Mail, help: "the mail's sender address",
		parse: custom("an address", func(c *Config, v string) error {
			if _, err := authd.NormalizeEmail(v); err != nil {
				return errors.New("not a valid address")
			}
			c.FromEmail = v
			return nil
		})},
	{name: "EMAILS_FROM_NAME", def: "Auth Service", need: Mail, help: "the mail's sender name",
		parse: custom("one line", func(c *Config, v string) error {
			if strings.ContainsAny(v, "\r\n") {
				return errors.New("must be one line")
			}
			c.FromName = v
			return nil
		})},
	{name: "MAIL_BACKEND", shown: "`smtp` if `SMTP_HOST` is set, else `log`", need: Mail, help: "`log` writes each mail (code included) to the log instead",
		parse: text(func(c *Config, v string) { c.mailBackendRaw = strings.ToLower(v) })},
	{name: "MAIL_WORKERS", def: "16", need: Mail, help: "concurrent SMTP deliveries (sized for the SMTP server, not the CPU)",
		parse: integer(1, 1024, func(c *Config, n int) { c.MailWorkers = n })},
	{name: "MAIL_CLAIM_TIMEOUT", def: "30s", need: Mail, help: "a mail job claimed by an instance that died is taken over by another after this long (a long send renews its claim: no duplicates); at least 1s",
		parse: duration(time.Second, func(c *Config, d time.Duration) { c.MailClaimTimeout = d })},
	{name: "MAIL_RETRY_BACKOFF", def: "2s", need: Mail, help: "the wait before a failed mail's first retry (temporary failures only: refused connections, timeouts, 4xx), doubled per retry with jitter up to `MAIL_RETRY_MAX`; never past the code's expiry",
		parse: duration(0, func(c *Config, d time.Duration) { c.MailRetryBackoff = d })},
	{name: "MAIL_RETRY_MAX_ATTEMPTS", def: "10", need: Mail, help: "how many times the SMTP server may refuse a mail temporarily (a 4xx reply) before it is given up (status `failed`); attempts it does not answer (refused connections, timeouts: an outage) do not count, and are retried until the code expires",
		parse: integer(1, 1000, func(c *Config, n int) { c.MailRetryMaxAttempts = n })},
	{name: "MAIL_RETRY_MAX", def: "30s", need: Mail, help: "the longest wait between two tries of a mail",
		parse: duration(0, func(c *Config, d time.Duration) { c.MailRetryMax = d })},
	{name: "MAIL_MAX_LAG", def: "30s", need: Mail, help: "send-code answers 503 with `Retry-After` while the oldest mail held up by delivery (a backlog, a slow or failing SMTP server; not a recipient's own refusal) has waited longer: its code would arrive too late. Nothing is stored or counted; verify-code is not concerned; readiness shows the lag. `0`: never",
		parse: duration(0, func(c *Config, d time.Duration) { c.MailMaxLag = d })},
	{name: "EMAIL_TEMPLATES_DIR", shown: "embedded", need: Mail, help: "a directory with `subject.txt`, `body.txt`, `body.html` (Go templates: `.ProjectName`, `.Code`, `.Minutes`, `.ExpiresAt`); checked at start",
		parse: text(func(c *Config, v string) { c.TemplatesDir = v })},
	{name: "OTP_EXPIRE_SECONDS", def: "300", need: Policy, help: "a code's lifetime",
		parse: parseExpire},
	{name: "OTP_ATTEMPTS_LIMIT", def: "5", need: Policy, help: "wrong tries per code, then the code is dead",
		parse: parseAttempts},
	{name: "OTP_RESEND_SECONDS", def: "60", need: Policy, help: "cooldown between codes for one (project, address)",
		parse: parseResend},
	{name: "LIMIT_SEND_CODE_PER_IP", def: "10/m", need: Policy, help: "send-code per client IP",
		parse: rate(func(c *Config, r authd.Rate) { c.Policy.SendPerIP = r })},
	{name: "LIMIT_VERIFY_CODE_PER_IP", def: "60/m", need: Policy, help: "verify-code per client IP",
		parse: rate(func(c *Config, r authd.Rate) { c.Policy.VerifyPerIP = r })},
	{name: "LIMIT_CODES_PER_ADDRESS", def: "5/h", need: Policy, help: "codes per mailbox (an address without its `+tag`; see [Security policy](#security-policy)), all projects together",
		parse: rate(func(c *Config, r authd.Rate) { c.Policy.CodesPerAddress = r })},
	{name: "LIMIT_FAILURES_PER_ADDRESS", def: "10/h", need: Policy, help: "wrong tries per mailbox, all projects, across codes",
		parse: rate(func(c *Config, r authd.Rate) { c.Policy.FailuresPerAddress = r })},
	{name: "LIMIT_MAILS_TOTAL", def: "1000/m", need: Policy, help: "mails in total, all projects, all addresses, all instances: a circuit breaker for the sender's reputation, not a quota (see [Security policy](#security-policy)); `0`: off",
		parse: rate(func(c *Config, r authd.Rate) { c.Policy.MailsTotal = r })},
	{name: "LIMIT_MAILS_PER_PROJECT", def: "0", need: Policy, help: "mails per project_id (`0`: off)",
		parse: parseMailsPerProject},
	{name: "PROJECTS_FILE", need: Policy, help: "a JSON or YAML project registry; see [Projects](#projects)",
		parse: custom("a file", func(c *Config, v string) error { return c.loadProjects(v) })},
	{name: "TRUSTED_PROXIES", need: HTTP, help: "CIDRs or addresses of the proxies whose `X-Forwarded-For` (or, without it, `X-Real-IP`) is believed; see [Behind a proxy](#behind-a-proxy)",
		parse: custom("CIDRs, addresses", func(c *Config, v string) (err error) {
			c.TrustedProxies, err = ParseTrustedProxies(v)
			return err
		})},
	{name: "HOST", shown: "`0.0.0.0` (`127.0.0.1` in development)", need: HTTP, help: "the address to listen on",
		parse: text(func(c *Config, v string) { c.Host = v })},
	{name: "PORT", def: "8013", need: HTTP | Issuer, help: "the port to listen on (`0`: any free port)",
		parse: integer(0, 65535, func(c *Config, n int) { c.Port = n })},
	{name: "LOG_LEVEL", def: "info", need: 0, help: "`debug`, `info`, `warn`/`warning`, `error`",
		parse: custom("debug, info, warn, error", func(c *Config, v string) error {
			levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError}
			l, ok := levels[strings.ToLower(v)]
			if !ok {
				return errors.New("want debug, info, warn or error")
			}
			c.LogLevel = l
			return nil
		})},
	{name: "LOG_FORMAT", shown: "`json` (`text` in development)", need: 0, help: "`json` or `text`",
		parse: oneOf([]string{"json", "text"}, func(c *Config, v string) { c.LogFormat = v })},
	{name: "METRICS_ADDR", def: "127.0.0.1:9464", need: HTTP, help: "where Prometheus's `/metrics` is served: a private listener of its own. Set to the main listener's address (`HOST:PORT`) it is on the public port, with a warning at start, and its verify outcomes are merged so that they tell no more than the answers do",
		parse: custom("host:port", func(c *Config, v string) error {
			if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
				return errors.New("want host:port, e.g. 127.0.0.1:9464")
			}
			c.MetricsAddr = v
			return nil
		})},
	{name: "MAX_INFLIGHT", def: "1024", need: HTTP, help: "requests to the routes that reach Redis or PostgreSQL (send-code, verify-code, delivery status) served at once; one more is answered 503 with `Retry-After: 1` at once instead of queueing behind slow dependencies. Health, readiness, metrics, keys and docs are never refused; `0`: no bound",
		parse: integer(0, 1<<20, func(c *Config, n int) { c.MaxInflight = n })},
	{name: "REQUEST_TIMEOUT", def: "5s", need: HTTP, help: "the deadline of each request MAX_INFLIGHT counts: what it still waits on then (a pooled connection, a PostgreSQL query) gives up and the answer is 503, a consumed code given back",
		parse: durationIn(100*time.Millisecond, 30*time.Second, func(c *Config, d time.Duration) { c.RequestTimeout = d })},
	{name: "SHUTDOWN_DELAY", def: "0", need: HTTP, help: "on SIGTERM/SIGINT, readiness answers 503 at once and the listener stays open this long, so a load balancer stops sending first (seconds or `5s`)",
		parse: duration(0, func(c *Config, d time.Duration) { c.ShutdownDelay = d })},
	{name: "SHUTDOWN_TIMEOUT", def: "15s", need: HTTP, help: "then the requests in flight get this long to finish (seconds or `15s`)",
		parse: duration(0, func(c *Config, d time.Duration) { c.ShutdownTimeout = d })},
}

// Load reads the variables n needs from getenv, then from the dotenv file
// at dotenvPath ("" for none; a missing file is no error), and checks
// them. In development mode it may write the generated secrets into the
// data directory, when n needs them. The error is one line naming the
// variable; it never repeats a secret.
func Load(getenv func(string) string, dotenvPath string, n Need) (Config, error) {
	e, err := newEnv(getenv, dotenvPath)
	if err != nil {
		return Config{}, err
	}
	return load(e, n)
}

func load(e env, n Need) (Config, error) {
	var c Config
	c.Dev = !e.set("DATABASE_URL") && !e.set("POSTGRES_SERVER") && !e.set("REDIS_URL") && !e.set("REDIS_HOST") && !e.set("SMTP_HOST")
	c.Host, c.LogFormat = "0.0.0.0", "json"
	if c.Dev {
		c.Host, c.LogFormat = "127.0.0.1", "text"
	}
	for _, s := range settings {
		if s.need != 0 && s.need&n == 0 {
			continue
		}
		v := e.get(s.name)
		if !s.secret {
			v = strings.TrimSpace(v)
		}
		if v == "" {
			if v = s.def; v == "" {
				continue
			}
		}
		if err := s.parse.apply(&c, v); err != nil {
			return c, configError(s.name, err.Error())
		}
	}
	for _, check := range []struct {
		n  Need
		fn func(*Config) error
	}{
		{Database, (*Config).checkDatabase}, {Redis, (*Config).checkRedis}, {Mail, (*Config).checkMail},
		{ProofKey, (*Config).checkProofKey}, {MasterKey, (*Config).checkMasterKey}, {Issuer, (*Config).checkIssuer}, {Tokens, (*Config).checkTokens},
	} {
		if n&check.n != 0 {
			if err := check.fn(&c); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

func (c *Config) checkDatabase() error {
	if c.DatabaseURL != "" || c.pg.host == "" {
		return nil
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(c.pg.user, c.pg.pass), Host: net.JoinHostPort(c.pg.host, c.pg.port), Path: "/" + c.pg.db}
	c.DatabaseURL = u.String()
	return nil
}

func (c *Config) checkRedis() error {
	if c.RedisURL != "" || c.redis.host == "" {
		return nil
	}
	u := url.URL{Scheme: "redis", Host: net.JoinHostPort(c.redis.host, c.redis.port), Path: "/" + c.redis.db}
	if c.redis.pass != "" {
		u.User = url.UserPassword("", c.redis.pass)
	}
	c.RedisURL = u.String()
	return nil
}

func (c *Config) checkMail() error {
	switch c.mailBackendRaw {
	case "":
		c.MailBackend = "log"
		if c.SMTPHost != "" {
			c.MailBackend = "smtp"
		} else if !c.Dev {
			return configError("SMTP_HOST", "not set, but a database or Redis is: codes would go nowhere (set MAIL_BACKEND=log to print them to the log on purpose)")
		}
	case "smtp":
		if c.SMTPHost == "" {
			return configError("SMTP_HOST", "required by MAIL_BACKEND=smtp")
		}
		c.MailBackend = "smtp"
	case "log":
		c.MailBackend = "log"
	default:
		return configError("MAIL_BACKEND", fmt.Sprintf("want smtp or log, got %q", c.mailBackendRaw))
	}
	if c.MailRetryBackoff <= 0 || c.MailRetryMax < c.MailRetryBackoff {
		return configError("MAIL_RETRY_MAX", "want 0 < MAIL_RETRY_BACKOFF <= MAIL_RETRY_MAX")
	}
	return nil
}

func (c *Config) checkProofKey() error {
	sk := c.SecretKey
	if sk == "" && c.Dev {
		var err error
		if sk, err = devSecret(c.DataDir, "secret_key"); err != nil {
			return configError("SECRET_KEY", "not set, and no development key could be kept in AUTHD_DATA_DIR: "+err.Error())
		}
	}
	switch {
	case sk == "":
		return configError("SECRET_KEY", "required outside development mode (32+ random bytes; it signs the v1 proofs)")
	case isPlaceholder(sk):
		return configError("SECRET_KEY", "is a placeholder from an example: set 32+ random bytes")
	case len(sk) < 32 && !c.allowWeak:
		return configError("SECRET_KEY", fmt.Sprintf("too short (%d bytes, want 32+); ALLOW_WEAK_SECRET_KEY=true accepts it if your consumers already hold it", len(sk)))
	}
	c.SecretKey, c.WeakSecret = sk, len(sk) < 32
	return nil
}

func (c *Config) checkMasterKey() error {
	mk := c.masterRaw
	if mk == "" && c.Dev {
		var err error
		if mk, err = devSecret(c.DataDir, "master_key"); err != nil {
			return configError("AUTHD_MASTER_KEY", "not set, and no development key could be kept in AUTHD_DATA_DIR: "+err.Error())
		}
	}
	switch key, ok := decodeKey(mk); {
	case mk == "":
		return configError("AUTHD_MASTER_KEY", "required outside development mode (32+ random bytes, base64 or hex)")
	case isPlaceholder(mk):
		return configError("AUTHD_MASTER_KEY", "is a placeholder from an example: set 32+ random bytes, base64 or hex")
	case !ok:
		return configError("AUTHD_MASTER_KEY", "want 32+ random bytes, base64 or hex encoded (e.g. openssl rand -base64 32)")
	default:
		c.MasterKey = key
	}
	for i, raw := range strings.Split(c.previousRaw, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		key, ok := decodeKey(raw)
		switch {
		case isPlaceholder(raw):
			return configError("AUTHD_MASTER_KEY_PREVIOUS", fmt.Sprintf("key %d is a placeholder from an example", i+1))
		case !ok:
			return configError("AUTHD_MASTER_KEY_PREVIOUS", fmt.Sprintf("key %d: want 32+ random bytes, base64 or hex encoded", i+1))
		case bytes.Equal(key, c.MasterKey):
			return configError("AUTHD_MASTER_KEY_PREVIOUS", fmt.Sprintf("key %d is AUTHD_MASTER_KEY itself: set the new key in AUTHD_MASTER_KEY and the old one here", i+1))
		}
		c.PreviousMasterKeys = append(c.PreviousMasterKeys, key)
	}
	return nil
}

// MasterKeys returns AUTHD_MASTER_KEY, then AUTHD_MASTER_KEY_PREVIOUS's
// keys: a Keyring's Masters.
func (c Config) MasterKeys() [][]byte { return append([][]byte{c.MasterKey}, c.PreviousMasterKeys...) }

func (c *Config) checkIssuer() error {
	if c.Issuer == "" {
		if !c.Dev {
			// Never guessed from a request's Host header: a forged Host
			// would change the tokens' issuer and the published key URL.
			return configError("AUTHD_ISSUER", "required outside development mode: the public URL of authd, e.g. https://auth.example.com (the tokens' iss)")
		}
		c.Issuer = "http://localhost:" + strconv.Itoa(c.Port)
	}
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return configError("AUTHD_ISSUER", "want an http(s) URL without query or fragment, e.g. https://auth.example.com")
	}
	return nil
}

// checkTokens runs after the secrets: the HS256 secret must not be
// SECRET_KEY.
func (c *Config) checkTokens() error {
	// A client's RS256 ID tokens are signed with the RSA key kept, sealed,
	// in the database: neither an HS256 secret nor a key file holds one.
	if c.Projects != nil && (c.TokenAlg == "HS256" || c.TokenKeyFile != "") &&
		slices.ContainsFunc(c.Projects.All(), func(p authd.Project) bool { return p.IDTokenAlg == "RS256" }) {
		return configError("PROJECTS_FILE", "id_token_signed_response_alg RS256 needs the token keys kept in the database (TOKEN_ALG=EdDSA, no TOKEN_KEY_FILE)")
	}
	if c.TokenAlg != "HS256" {
		if c.hsRaw != "" {
			return configError("TOKEN_HS256_SECRET", "set, but TOKEN_ALG is not HS256")
		}
		if c.TokenKeyFile != "" {
			b, err := os.ReadFile(c.TokenKeyFile)
			if err == nil {
				_, err = authd.ParseKeyFile(b)
			}
			if e, ok := err.(*authd.Error); ok {
				return configError("TOKEN_KEY_FILE", e.Message)
			} else if err != nil {
				return configError("TOKEN_KEY_FILE", err.Error())
			}
		}
		return nil
	}
	switch s := c.hsRaw; {
	case c.TokenKeyFile != "":
		return configError("TOKEN_KEY_FILE", "PEM keys are Ed25519: not used with TOKEN_ALG=HS256")
	case s == "":
		return configError("TOKEN_HS256_SECRET", "required by TOKEN_ALG=HS256 (32+ random bytes, shared with the services that verify)")
	case isPlaceholder(s):
		return configError("TOKEN_HS256_SECRET", "is a placeholder from an example: set 32+ random bytes")
	case len(s) < 32:
		return configError("TOKEN_HS256_SECRET", fmt.Sprintf("too short (%d bytes, want 32+)", len(s)))
	case s == c.SecretKey:
		return configError("TOKEN_HS256_SECRET", "must not be SECRET_KEY: every v1 consumer holds that one")
	}
	c.HS256Secret = []byte(c.hsRaw)
	return nil
}

// The parsers of the table's values. Each error says what the variable
// wants; configError names the variable.

func custom(rng string, apply func(*Config, string) error) parser { return parser{rng, apply} }

func text(set func(*Config, string)) parser {
	return parser{"", func(c *Config, v string) error { set(c, v); return nil }}
}

func integer(lo, hi int, set func(*Config, int)) parser {
	return parser{fmt.Sprintf("%d to %d", lo, hi), func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("want %d to %d, got %d", lo, hi, n)
		}
		set(c, n)
		return nil
	}}
}

func seconds(lo, hi int, set func(*Config, time.Duration)) parser {
	p := integer(lo, hi, func(c *Config, n int) { set(c, time.Duration(n)*time.Second) })
	p.rng += " s"
	return p
}

func boolean(set func(*Config, bool)) parser {
	return parser{"true, false", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "1", "true", "yes", "on":
			set(c, true)
		case "0", "false", "no", "off":
			set(c, false)
		default:
			return errors.New("want true or false")
		}
		return nil
	}}
}

// duration reads seconds ("15") or a Go duration ("15s", "500ms"), from lo
// to an hour.
func duration(lo time.Duration, set func(*Config, time.Duration)) parser {
	return durationIn(lo, time.Hour, set)
}

// durationIn is duration from lo to hi.
func durationIn(lo, hi time.Duration, set func(*Config, time.Duration)) parser {
	rng := shortDuration(lo) + " to " + shortDuration(hi)
	return parser{rng, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("want seconds or a duration such as 15s, from %s, got %q", rng, v)
		}
		set(c, d)
		return nil
	}}
}

// durationUpTo reads a Go duration ("100ms") or seconds, from lo to hi.
func durationUpTo(lo, hi time.Duration, set func(*Config, time.Duration)) parser {
	return parser{fmt.Sprintf("%v to %v", lo, hi), func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("want a duration such as 100ms, from %v to %v, got %q", lo, hi, v)
		}
		set(c, d)
		return nil
	}}
}

// shortDuration writes d as a person would: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") { // 1h30m0s, 1h0m0s, 1m0s
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") { // 1h0m
		s = s[:len(s)-2]
	}
	return s
}

func rate(set func(*Config, authd.Rate)) parser {
	return parser{"N/s, N/m, N/h, 0", func(c *Config, v string) error {
		r, err := authd.ParseRate(v)
		if err != nil {
			return err
		}
		set(c, r)
		return nil
	}}
}

// oneOf accepts one of values, in any letter case, and sets it as listed.
func oneOf(values []string, set func(*Config, string)) parser {
	return parser{strings.Join(values, ", "), func(c *Config, v string) error {
		for _, w := range values {
			if strings.EqualFold(v, w) {
				set(c, w)
				return nil
			}
		}
		return fmt.Errorf("want %s, got %q", strings.Join(values, " or "), v)
	}}
}

func urlOf(example string, schemes []string, set func(*Config, string)) parser {
	return parser{"a URL", func(c *Config, v string) error {
		u, err := url.Parse(v)
		for _, s := range schemes {
			if err == nil && u.Scheme == s {
				set(c, v)
				return nil
			}
		}
		return errors.New("want " + example)
	}}
}

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

// isPlaceholder reports values copied from examples, which must not run in
// production.
func isPlaceholder(v string) bool {
	l := strings.ToLower(strings.TrimSpace(v))
	switch l {
	case "secret", "secret-key", "secret_key", "password", "xxx":
		return true
	}
	for _, p := range []string{"change-me", "changeme", "change_me", "your-", "replace-me", "<"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
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

// projectEntry is one project of PROJECTS_FILE:
//
//   - id: shop
//     display_name: Example Shop
//     allowed_origins: [https://shop.example.com]
//     limits: {mails_per_project: 5000/h, resend_seconds: 30}
//     redirect_uris: [https://shop.example.com/oauth2/callback]
//     client_secret_sha256: 9f86d0...   # omitted: a public client (PKCE only)
//     id_token_signed_response_alg: RS256
//     accent_color: "#0f766e"
//
// Its limits are the ones kept per project, each read as the variable it
// overrides is. The per-IP and per-mailbox budgets and the total are
// shared by all projects (one counter each, so that a caller cannot pick
// the loosest project_id): they are global only.
type projectEntry struct {
	ID             string   `json:"id"`
	DisplayName    string   `json:"display_name"`
	AllowedOrigins []string `json:"allowed_origins"`
	// The project as an OpenID Connect client (the hosted sign-in).
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
	ClientSecretSHA256     string   `json:"client_secret_sha256"`
	IDTokenAlg             string   `json:"id_token_signed_response_alg"`
	AccentColor            string   `json:"accent_color"`
	Limits                 struct {
		MailsPerProject *string `json:"mails_per_project"` // LIMIT_MAILS_PER_PROJECT
		ExpireSeconds   *int    `json:"expire_seconds"`    // OTP_EXPIRE_SECONDS
		AttemptsLimit   *int    `json:"attempts_limit"`    // OTP_ATTEMPTS_LIMIT
		ResendSeconds   *int    `json:"resend_seconds"`    // OTP_RESEND_SECONDS
	} `json:"limits"`
}

// loadProjects reads PROJECTS_FILE, JSON or YAML, over the policy read so
// far (the table lists it after the limits). Unknown keys are errors: a
// typo in a limit must not silently leave the default in force.
func (c *Config) loadProjects(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// YAML is a superset of JSON: one path for both. A key given twice is
	// an error.
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		// One line: the YAML parser's message spans several.
		return fmt.Errorf("not JSON or YAML: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var entries []projectEntry
	if err := dec.Decode(&entries); err != nil {
		return fmt.Errorf("want a list of {id, display_name, allowed_origins, limits, redirect_uris, post_logout_redirect_uris, client_secret_sha256, id_token_signed_response_alg, accent_color}: %v", err)
	}
	projects := make([]authd.Project, 0, len(entries))
	for _, e := range entries {
		// Each limit through its variable's own parser, on a copy of the
		// configuration holding the global policy.
		pc := Config{Policy: c.Policy}
		for _, l := range []struct {
			name  string
			value *string
			parse parser
		}{
			{"mails_per_project", e.Limits.MailsPerProject, parseMailsPerProject},
			{"expire_seconds", itoa(e.Limits.ExpireSeconds), parseExpire},
			{"attempts_limit", itoa(e.Limits.AttemptsLimit), parseAttempts},
			{"resend_seconds", itoa(e.Limits.ResendSeconds), parseResend},
		} {
			if l.value == nil {
				continue
			}
			if err := l.parse.apply(&pc, *l.value); err != nil {
				return fmt.Errorf("project %q: limits.%s: %v", e.ID, l.name, err)
			}
		}
		projects = append(projects, authd.Project{ID: e.ID, DisplayName: e.DisplayName, AllowedOrigins: e.AllowedOrigins, Policy: pc.Policy,
			RedirectURIs: e.RedirectURIs, PostLogoutRedirectURIs: e.PostLogoutRedirectURIs, ClientSecretSHA256: e.ClientSecretSHA256,
			IDTokenAlg: e.IDTokenAlg, Accent: e.AccentColor})
	}
	c.Projects, err = authd.NewRegistry(projects)
	return err
}

func itoa(n *int) *string {
	if n == nil {
		return nil
	}
	s := strconv.Itoa(*n)
	return &s
}

// ParseTrustedProxies reads TRUSTED_PROXIES: CIDRs or single addresses,
// separated by commas or spaces.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, errors.New("want CIDRs or addresses separated by commas, e.g. 10.0.0.0/8,192.168.1.10")
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
