package config

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
)

func envOf(m map[string]string) env {
	return env{getenv: func(k string) string { return m[k] }}
}

// loadConfig is the whole configuration, as serve loads it.
func loadConfig(e env) (Config, error) { return load(e, All) }

// The DESIGN.md test-vector key: long enough, and not one of the
// placeholders start-up refuses.
const testSecret = "e2e-secret-key-0123456789abcdef0123456789"

const testIssuer = "https://authd.test"

const goodMaster = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

const goodOld = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="

// AUTHD_MASTER_KEY_PREVIOUS: keys in either encoding, newest first, blanks
// ignored; the master keys are the current one, then those.
func TestPreviousMasterKeys(t *testing.T) {
	c, err := loadConfig(envOf(prodVars("AUTHD_MASTER_KEY_PREVIOUS", " "+goodOld+" , ,"+strings.Repeat("ab", 32))))
	if err != nil {
		t.Fatal(err)
	}
	ks := c.MasterKeys()
	if len(ks) != 3 || string(ks[1]) != "fedcba9876543210fedcba9876543210" || len(ks[2]) != 32 || ks[2][0] != 0xab {
		t.Fatalf("MasterKeys = %x", ks)
	}
	c, _ = loadConfig(envOf(prodVars()))
	if len(c.MasterKeys()) != 1 {
		t.Fatal("no AUTHD_MASTER_KEY_PREVIOUS, but more than one master key")
	}
}

func prodVars(extra ...string) map[string]string {
	m := map[string]string{
		"POSTGRES_SERVER": "db", "REDIS_HOST": "redis", "SMTP_HOST": "smtp",
		"SECRET_KEY": testSecret, "AUTHD_MASTER_KEY": goodMaster,
		"AUTHD_ISSUER": testIssuer,
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// A bad value stops start-up with one line naming the variable, and never
// repeats a secret.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"missing SECRET_KEY", prodVars("SECRET_KEY", ""), "SECRET_KEY"},
		{"placeholder SECRET_KEY", prodVars("SECRET_KEY", "change-me-to-32-random-bytes-0123456789"), "SECRET_KEY"},
		{"seed placeholder", prodVars("SECRET_KEY", "your-super-secret-key"), "SECRET_KEY"},
		{"short SECRET_KEY", prodVars("SECRET_KEY", "short-but-real-0123"), "SECRET_KEY"},
		{"missing master key", prodVars("AUTHD_MASTER_KEY", ""), "AUTHD_MASTER_KEY"},
		{"short master key", prodVars("AUTHD_MASTER_KEY", "abcdef0123"), "AUTHD_MASTER_KEY"},
		{"short previous master key", prodVars("AUTHD_MASTER_KEY_PREVIOUS", goodOld+",abcdef0123"), "AUTHD_MASTER_KEY_PREVIOUS"},
		{"previous is the current key", prodVars("AUTHD_MASTER_KEY_PREVIOUS", goodMaster), "AUTHD_MASTER_KEY_PREVIOUS"},
		{"placeholder previous key", prodVars("AUTHD_MASTER_KEY_PREVIOUS", "change-me"), "AUTHD_MASTER_KEY_PREVIOUS"},
		{"no SMTP with a database", prodVars("SMTP_HOST", ""), "SMTP_HOST"},
		{"bad MAIL_BACKEND", prodVars("MAIL_BACKEND", "pigeon"), "MAIL_BACKEND"},
		{"bad OTP_EXPIRE_SECONDS", prodVars("OTP_EXPIRE_SECONDS", "five"), "OTP_EXPIRE_SECONDS"},
		{"zero OTP_EXPIRE_SECONDS", prodVars("OTP_EXPIRE_SECONDS", "0"), "OTP_EXPIRE_SECONDS"},
		{"bad OTP_ATTEMPTS_LIMIT", prodVars("OTP_ATTEMPTS_LIMIT", "-1"), "OTP_ATTEMPTS_LIMIT"},
		{"bad rate", prodVars("LIMIT_SEND_CODE_PER_IP", "10/fortnight"), "LIMIT_SEND_CODE_PER_IP"},
		{"bad rate count", prodVars("LIMIT_CODES_PER_ADDRESS", "x/h"), "LIMIT_CODES_PER_ADDRESS"},
		{"bad port", prodVars("PORT", "99999"), "PORT"},
		{"bad POSTGRES_PORT", prodVars("POSTGRES_PORT", "pg"), "POSTGRES_PORT"},
		{"bad REDIS_PORT", prodVars("REDIS_PORT", "-3"), "REDIS_PORT"},
		{"bad REDIS_DB", prodVars("REDIS_DB", "x"), "REDIS_DB"},
		{"bad SMTP_PORT", prodVars("SMTP_PORT", "0"), "SMTP_PORT"},
		{"bad SMTP_TLS", prodVars("SMTP_TLS", "maybe"), "SMTP_TLS"},
		{"bad LOG_LEVEL", prodVars("LOG_LEVEL", "loud"), "LOG_LEVEL"},
		{"bad LOG_FORMAT", prodVars("LOG_FORMAT", "xml"), "LOG_FORMAT"},
		{"bad DATABASE_URL", prodVars("DATABASE_URL", "mysql://x"), "DATABASE_URL"},
		{"bad REDIS_URL", prodVars("REDIS_URL", "http://x"), "REDIS_URL"},
		{"bad from address", prodVars("EMAILS_FROM_EMAIL", "not an address"), "EMAILS_FROM_EMAIL"},
		{"from name with CRLF", prodVars("EMAILS_FROM_NAME", "A\r\nBcc: x@y.z"), "EMAILS_FROM_NAME"},
		{"bad ALLOW_WEAK_SECRET_KEY", prodVars("ALLOW_WEAK_SECRET_KEY", "sure"), "ALLOW_WEAK_SECRET_KEY"},
		{"bad key prefix", prodVars("REDIS_KEY_PREFIX", "a{b}"), "REDIS_KEY_PREFIX"},
		{"negative REDIS_WAIT_REPLICAS", prodVars("REDIS_WAIT_REPLICAS", "-1"), "REDIS_WAIT_REPLICAS"},
		{"REDIS_WAIT_REPLICAS not a number", prodVars("REDIS_WAIT_REPLICAS", "all"), "REDIS_WAIT_REPLICAS"},
		{"REDIS_WAIT_TIMEOUT of 0 (WAIT's for ever)", prodVars("REDIS_WAIT_TIMEOUT", "0"), "REDIS_WAIT_TIMEOUT"},
		{"REDIS_WAIT_TIMEOUT past 1s", prodVars("REDIS_WAIT_TIMEOUT", "2s"), "REDIS_WAIT_TIMEOUT"},
		{"REDIS_WAIT_TIMEOUT not a duration", prodVars("REDIS_WAIT_TIMEOUT", "soon"), "REDIS_WAIT_TIMEOUT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(envOf(tc.vars))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config: "+tc.want+":") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q; want one line naming %s", msg, tc.want)
			}
			for _, secret := range []string{tc.vars["SECRET_KEY"], tc.vars["AUTHD_MASTER_KEY"], goodOld} {
				if len(secret) > 8 && strings.Contains(msg, secret) {
					t.Fatalf("error repeats a secret: %q", msg)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := loadConfig(envOf(map[string]string{"AUTHD_DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Dev || c.Host != "127.0.0.1" || c.Port != 8013 || c.LogFormat != "text" || c.MailBackend != "log" {
		t.Fatalf("development defaults: %+v", c)
	}
	if c.ProjectName != "Authentication Microservice" || c.FromEmail != "info@example.com" || c.FromName != "Auth Service" {
		t.Fatalf("the original's defaults: %+v", c)
	}
	if c.Policy != DefaultPolicy() {
		t.Fatalf("policy %+v, want DESIGN.md's defaults", c.Policy)
	}
	// Generated secrets are kept: a restart signs with the same key.
	c2, err := loadConfig(envOf(map[string]string{"AUTHD_DATA_DIR": dir}))
	if err != nil || c2.SecretKey != c.SecretKey || !bytes.Equal(c2.MasterKey, c.MasterKey) {
		t.Fatalf("development secrets not kept across starts: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "secret_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}

	p, err := loadConfig(envOf(prodVars()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Dev || p.Host != "0.0.0.0" || p.LogFormat != "json" || p.MailBackend != "smtp" || !p.SMTPTLS || p.SMTPPort != 587 {
		t.Fatalf("production defaults: %+v", p)
	}
	if p.DatabaseURL != "postgres://postgres:postgres@db:5432/auth_db" || p.RedisURL != "redis://redis:6379/0" {
		t.Fatalf("URLs from the original's variables: %q %q", p.DatabaseURL, p.RedisURL)
	}
	if p.RedisWaitReplicas != 0 || p.RedisWaitTimeout != 100*time.Millisecond {
		t.Fatalf("REDIS_WAIT_*: %d %v, want off, 100ms", p.RedisWaitReplicas, p.RedisWaitTimeout)
	}
	w, err := loadConfig(envOf(prodVars("REDIS_WAIT_REPLICAS", "1", "REDIS_WAIT_TIMEOUT", "250ms")))
	if err != nil || w.RedisWaitReplicas != 1 || w.RedisWaitTimeout != 250*time.Millisecond {
		t.Fatalf("REDIS_WAIT_REPLICAS=1 REDIS_WAIT_TIMEOUT=250ms: %d %v %v", w.RedisWaitReplicas, w.RedisWaitTimeout, err)
	}
}

func TestConfigValues(t *testing.T) {
	c, err := loadConfig(envOf(prodVars(
		"SECRET_KEY", "short-legacy-key", "ALLOW_WEAK_SECRET_KEY", "true",
		"AUTHD_MASTER_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"DATABASE_URL", "postgres://u:p@h:1/d", "POSTGRES_SERVER", "ignored",
		"OTP_EXPIRE_SECONDS", "600", "OTP_ATTEMPTS_LIMIT", "3", "OTP_RESEND_SECONDS", "30",
		"LIMIT_SEND_CODE_PER_IP", "0", "LIMIT_FAILURES_PER_ADDRESS", "20/h", "LIMIT_MAILS_PER_PROJECT", "1000/h",
		"LOG_LEVEL", "warning", "MAIL_BACKEND", "log",
	)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.WeakSecret || len(c.MasterKey) != 32 || c.DatabaseURL != "postgres://u:p@h:1/d" {
		t.Fatalf("%+v", c)
	}
	want := authd.Policy{
		CodeTTL: 600 * time.Second, AttemptsPerCode: 3, ResendCooldown: 30 * time.Second,
		CodesPerAddress: authd.Rate{N: 5, Period: time.Hour}, FailuresPerAddress: authd.Rate{N: 20, Period: time.Hour},
		VerifyPerIP: authd.Rate{N: 60, Period: time.Minute}, MailsPerProject: authd.Rate{N: 1000, Period: time.Hour},
		MailsTotal: authd.Rate{N: 1000, Period: time.Minute},
	}
	if c.Policy != want {
		t.Fatalf("policy %+v, want %+v", c.Policy, want)
	}
}

// The environment wins over .env.
func TestDotEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	os.WriteFile(path, []byte("PROJECT_NAME=\"From File\"\nPORT=9000\nAUTHD_DATA_DIR="+dir+"\n"), 0o600)
	e, err := newEnv(func(k string) string {
		if k == "PORT" {
			return "9001"
		}
		return ""
	}, path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(e)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProjectName != "From File" || c.Port != 9001 {
		t.Fatalf("got %q %d", c.ProjectName, c.Port)
	}
}

func TestConfigProjectsAndProxies(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	good := write("good.yaml", "- id: shop\n  display_name: Shop\n  allowed_origins: [https://Shop.Example.com]\n  limits: {mails_per_project: 3/m, resend_seconds: 5}\n- id: bank\n  display_name: Bank\n")
	c, err := loadConfig(envOf(prodVars("PROJECTS_FILE", good, "TRUSTED_PROXIES", "10.0.0.0/8 ::1")))
	if err != nil {
		t.Fatal(err)
	}
	shop, ok := c.Projects.Lookup("shop")
	if !ok || shop.DisplayName != "Shop" || shop.Policy.MailsPerProject != (authd.Rate{N: 3, Period: time.Minute}) || shop.Policy.ResendCooldown != 5*time.Second {
		t.Fatalf("shop: %+v", shop)
	}
	if bank, _ := c.Projects.Lookup("bank"); bank.Policy != c.Policy {
		t.Fatal("a project without limits does not get the global policy")
	}
	if !c.Projects.AllowsOrigin("https://shop.example.com") || c.Projects.AllowsOrigin("https://evil.example.com") {
		t.Fatal("allowed origins")
	}
	if len(c.TrustedProxies) != 2 {
		t.Fatalf("TRUSTED_PROXIES: %v", c.TrustedProxies)
	}
	for name, content := range map[string]string{
		"missing":   "",
		"notalist":  `{"id": "shop"}`,
		"unknown":   "- id: shop\n  display_name: Shop\n  limitz: {}\n",
		"badrate":   "- id: shop\n  display_name: Shop\n  limits: {mails_per_project: lots}\n",
		"shared":    "- id: shop\n  display_name: Shop\n  limits: {send_code_per_ip: 100/m}\n",
		"dup":       "- id: shop\n  display_name: A\n- id: shop\n  display_name: B\n",
		"badid":     "- id: 'sh op'\n  display_name: A\n",
		"noname":    "- id: shop\n",
		"twice":     "- id: shop\n  display_name: A\n  display_name: B\n",
		"badorigin": "- id: shop\n  display_name: A\n  allowed_origins: ['*']\n",
	} {
		path := filepath.Join(dir, "nope.yaml")
		if content != "" {
			path = write(name+".yaml", content)
		}
		_, err := loadConfig(envOf(prodVars("PROJECTS_FILE", path)))
		if err == nil || !strings.HasPrefix(err.Error(), "config: PROJECTS_FILE:") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := loadConfig(envOf(prodVars("TRUSTED_PROXIES", "10.0.0.0/99"))); err == nil || !strings.HasPrefix(err.Error(), "config: TRUSTED_PROXIES:") {
		t.Errorf("bad TRUSTED_PROXIES: %v", err)
	}
}

func TestMailConfig(t *testing.T) {
	c, err := loadConfig(envOf(prodVars("MAIL_CLAIM_TIMEOUT", "45")))
	if err != nil || c.MailClaimTimeout != 45*time.Second || c.MailRetryBackoff != 2*time.Second || c.MailRetryMax != 30*time.Second {
		t.Fatalf("MAIL_CLAIM_TIMEOUT=45: %+v %v", c.MailClaimTimeout, err)
	}
	for _, tc := range []struct{ key, val, want string }{
		{"MAIL_CLAIM_TIMEOUT", "500ms", "MAIL_CLAIM_TIMEOUT"},
		{"MAIL_CLAIM_TIMEOUT", "soon", "MAIL_CLAIM_TIMEOUT"},
		{"MAIL_RETRY_BACKOFF", "1m", "MAIL_RETRY_MAX"}, // above the 30 s maximum
		{"MAIL_RETRY_BACKOFF", "0", "MAIL_RETRY_MAX"},
		{"MAIL_RETRY_MAX", "-1s", "MAIL_RETRY_MAX"},
	} {
		_, err := loadConfig(envOf(prodVars(tc.key, tc.val)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want an error naming %s", tc.key, tc.val, err, tc.want)
		}
	}
}

func TestTokenConfigErrors(t *testing.T) {
	path, _ := keyFile(t)
	cases := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"issuer required in production", prodVars("AUTHD_ISSUER", ""), "AUTHD_ISSUER"},
		{"issuer not a URL", prodVars("AUTHD_ISSUER", "auth.example.com"), "AUTHD_ISSUER"},
		{"issuer with a query", prodVars("AUTHD_ISSUER", "https://a.example?x=1"), "AUTHD_ISSUER"},
		{"bad alg", prodVars("TOKEN_ALG", "RS256"), "TOKEN_ALG"},
		{"HS256 without secret", prodVars("TOKEN_ALG", "HS256"), "TOKEN_HS256_SECRET"},
		{"HS256 short secret", prodVars("TOKEN_ALG", "HS256", "TOKEN_HS256_SECRET", "short"), "TOKEN_HS256_SECRET"},
		{"HS256 secret is SECRET_KEY", prodVars("TOKEN_ALG", "HS256", "TOKEN_HS256_SECRET", testSecret), "TOKEN_HS256_SECRET"},
		{"secret without HS256", prodVars("TOKEN_HS256_SECRET", "hs256-e2e-secret-0123456789abcdef0123456789"), "TOKEN_HS256_SECRET"},
		{"missing key file", prodVars("TOKEN_KEY_FILE", "/nonexistent/key.pem"), "TOKEN_KEY_FILE"},
		{"key file not PEM", prodVars("TOKEN_KEY_FILE", "/etc/hostname"), "TOKEN_KEY_FILE"},
		// What start-up would refuse is refused here, in one line: the
		// same reading of the file as internal/jwt's.
		{"key file with a certificate", prodVars("TOKEN_KEY_FILE", withCertificate(t, path)), "TOKEN_KEY_FILE"},
		{"TTL too long", prodVars("TOKEN_TTL_SECONDS", "999999"), "TOKEN_TTL_SECONDS"},
		{"bad cache", prodVars("JWKS_CACHE_SECONDS", "x"), "JWKS_CACHE_SECONDS"},
	}
	// A client that wants RS256 ID tokens needs the keys kept in the
	// database, whose set holds the RSA key.
	rs256 := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(rs256, []byte("- id: app\n  display_name: App\n  redirect_uris: [https://app.example.com/cb]\n  id_token_signed_response_alg: RS256\n"), 0o600)
	cases = append(cases, []struct {
		name string
		vars map[string]string
		want string
	}{
		{"RS256 client with a key file", prodVars("PROJECTS_FILE", rs256, "TOKEN_KEY_FILE", path), "PROJECTS_FILE"},
		{"RS256 client with HS256", prodVars("PROJECTS_FILE", rs256, "TOKEN_ALG", "HS256", "TOKEN_HS256_SECRET", "hs256-e2e-secret-0123456789abcdef0123456789"), "PROJECTS_FILE"},
	}...)
	for _, tc := range cases {
		_, err := loadConfig(envOf(tc.vars))
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.want+":") {
			t.Errorf("%s: %v, want config: %s: ...", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: the error repeats a secret", tc.name)
		}
	}
	if _, err := loadConfig(envOf(prodVars("PROJECTS_FILE", rs256))); err != nil {
		t.Fatalf("RS256 client with the keys in the database: %v", err)
	}
	cfg, err := loadConfig(envOf(prodVars("TOKEN_KEY_FILE", path, "TOKEN_TTL_SECONDS", "600")))
	if err != nil || cfg.TokenKeyFile != path || cfg.TokenTTL != 10*time.Minute || cfg.Issuer != testIssuer || cfg.JWKSMaxAge != 5*time.Minute {
		t.Fatalf("good config: %+v, %v", cfg, err)
	}
	dev, err := loadConfig(envOf(map[string]string{"AUTHD_DATA_DIR": t.TempDir(), "PORT": "9999"}))
	if err != nil || dev.Issuer != "http://localhost:9999" {
		t.Fatalf("development issuer: %q, %v", dev.Issuer, err)
	}
}

// withCertificate is the key file at path with a certificate block after
// its key, which TOKEN_KEY_FILE does not take.
func withCertificate(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not really")})...)
	out := filepath.Join(t.TempDir(), "with-cert.pem")
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func keyFile(t *testing.T) (string, ed25519.PrivateKey) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	path := filepath.Join(t.TempDir(), "token.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies("10.0.0.1/8,::ffff:1.2.3.4 fd00::/8")
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("1.2.3.4/32"), netip.MustParsePrefix("fd00::/8")}
	if err != nil || len(got) != len(want) {
		t.Fatalf("%v %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "1.2.3"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
