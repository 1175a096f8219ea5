package main

// The v2 identity tokens' configuration, wiring and the `authd keys`
// commands (issue 5).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/token"
	"github.com/authd/authd/verify"
)

// tokenConfig is the part of Config about the v2 tokens.
type tokenConfig struct {
	Issuer       string        // AUTHD_ISSUER: iss, and the base of jwks_uri
	TokenTTL     time.Duration // TOKEN_TTL_SECONDS
	TokenAlg     string        // TOKEN_ALG: EdDSA or HS256
	HS256Secret  []byte        // TOKEN_HS256_SECRET (HS256 only)
	TokenKeyFile string        // TOKEN_KEY_FILE: PEM keys instead of the database
	JWKSMaxAge   time.Duration // JWKS_CACHE_SECONDS: the JWKS Cache-Control max-age
}

// loadTokenConfig runs after the secrets are loaded: the HS256 secret must
// not be SECRET_KEY.
func loadTokenConfig(e env, c Config) (tokenConfig, error) {
	var t tokenConfig
	t.Issuer = strings.TrimSpace(e.get("AUTHD_ISSUER"))
	if t.Issuer == "" {
		if !c.Dev {
			// Never guessed from a request's Host header: a forged Host
			// would change the tokens' issuer and the published key URL.
			return t, configError("AUTHD_ISSUER", "required outside development mode: the public URL of authd, e.g. https://auth.example.com (the tokens' iss)")
		}
		t.Issuer = "http://localhost:" + strconv.Itoa(c.Port)
	}
	u, err := url.Parse(t.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return t, configError("AUTHD_ISSUER", "want an http(s) URL without query or fragment, e.g. https://auth.example.com")
	}
	secs, err := intVar(e, "TOKEN_TTL_SECONDS", 900, 30, 86400)
	if err != nil {
		return t, err
	}
	t.TokenTTL = time.Duration(secs) * time.Second
	if secs, err = intVar(e, "JWKS_CACHE_SECONDS", 300, 0, 86400); err != nil {
		return t, err
	}
	t.JWKSMaxAge = time.Duration(secs) * time.Second
	t.TokenKeyFile = strings.TrimSpace(e.get("TOKEN_KEY_FILE"))

	switch alg := strings.TrimSpace(e.get("TOKEN_ALG")); strings.ToUpper(alg) {
	case "", "EDDSA":
		t.TokenAlg = verify.EdDSA
		if e.get("TOKEN_HS256_SECRET") != "" {
			return t, configError("TOKEN_HS256_SECRET", "set, but TOKEN_ALG is not HS256")
		}
		if t.TokenKeyFile != "" {
			b, err := os.ReadFile(t.TokenKeyFile)
			if err != nil {
				return t, configError("TOKEN_KEY_FILE", err.Error())
			}
			if err := token.CheckPEM(b); err != nil {
				return t, configError("TOKEN_KEY_FILE", authdMessage(err))
			}
		}
	case "HS256":
		t.TokenAlg = verify.HS256
		if t.TokenKeyFile != "" {
			return t, configError("TOKEN_KEY_FILE", "PEM keys are Ed25519: not used with TOKEN_ALG=HS256")
		}
		s := e.get("TOKEN_HS256_SECRET")
		switch {
		case s == "":
			return t, configError("TOKEN_HS256_SECRET", "required by TOKEN_ALG=HS256 (32+ random bytes, shared with the services that verify)")
		case isPlaceholder(s):
			return t, configError("TOKEN_HS256_SECRET", "is a placeholder from an example: set 32+ random bytes")
		case len(s) < 32:
			return t, configError("TOKEN_HS256_SECRET", fmt.Sprintf("too short (%d bytes, want 32+)", len(s)))
		case s == c.SecretKey:
			return t, configError("TOKEN_HS256_SECRET", "must not be SECRET_KEY: every v1 consumer holds that one")
		}
		t.HS256Secret = []byte(s)
	default:
		return t, configError("TOKEN_ALG", fmt.Sprintf("want EdDSA or HS256, got %q", alg))
	}
	return t, nil
}

// authdMessage is an error's caller-safe message.
func authdMessage(err error) string {
	var e *authd.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// tokenSource is where the configuration says the keys are.
func tokenSource(cfg Config, keys authd.Keys, store authd.KeyStore) token.Source {
	switch {
	case cfg.TokenAlg == verify.HS256:
		return token.Secret(cfg.HS256Secret)
	case cfg.TokenKeyFile != "":
		return token.FileSource{Path: cfg.TokenKeyFile}
	}
	return &token.StoreSource{Store: store, Key: keys.Token}
}

func tokenOptions(cfg Config, log *slog.Logger) token.Options {
	return token.Options{Issuer: cfg.Issuer, Alg: cfg.TokenAlg, TTL: cfg.TokenTTL, CacheMaxAge: cfg.JWKSMaxAge, Logger: log}
}

const keysUsage = `Usage:
  authd keys list                 list the token signing keys and their states
  authd keys rotate [--delay D]   publish a new key now, sign with it after D
                                  (default: JWKS_CACHE_SECONDS; 0 switches at once)
`

// runKeys is `authd keys list|rotate`.
func runKeys(ctx context.Context, args []string, cfg Config, log *slog.Logger, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "rotate") {
		return usageError{"authd keys: want list or rotate\n\n" + keysUsage}
	}
	sub := args[0]
	fs := flag.NewFlagSet("authd keys "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	delay := fs.Duration("delay", cfg.JWKSMaxAge, "")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 || (sub == "list" && fs.NFlag() > 0) {
		return usageError{"authd keys " + sub + ": bad arguments\n\n" + keysUsage}
	}
	if *delay < 0 {
		return usageError{"authd keys rotate: --delay must not be negative\n\n" + keysUsage}
	}
	if cfg.TokenAlg == verify.HS256 {
		return errors.New("authd keys: TOKEN_ALG=HS256 signs with TOKEN_HS256_SECRET: no keys to list or rotate (change the secret to rotate)")
	}
	if sub == "rotate" && cfg.TokenKeyFile != "" {
		return errors.New("authd keys rotate: TOKEN_KEY_FILE is set: put a new key first in the file and keep the old one after it until its tokens have expired")
	}
	keys, err := authd.DeriveKeys(cfg.MasterKey)
	if err != nil {
		return err
	}
	users, err := openUsers(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer users.Close()
	if err := users.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	store, ok := users.(authd.KeyStore)
	if !ok {
		return fmt.Errorf("user store %T keeps no keys", users)
	}
	src := tokenSource(cfg, keys, store)
	if sub == "rotate" {
		k, err := token.Rotate(ctx, src.(*token.StoreSource), *delay, cfg.TokenTTL)
		if err != nil {
			return fmt.Errorf("authd keys rotate: %w", err)
		}
		fmt.Fprintf(stdout, "new key %s published; it signs from %s (running instances follow within 5 s)\n",
			k.ID, k.ActiveFrom.Format(time.RFC3339))
	}
	infos, err := token.List(ctx, src, time.Now(), cfg.TokenTTL)
	if err != nil {
		return fmt.Errorf("authd keys: %w", err)
	}
	return writeKeys(stdout, infos)
}

func writeKeys(w io.Writer, infos []token.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tSIGNS FROM (UTC)\tPUBLISHED UNTIL (UTC)")
	for _, k := range infos {
		from, until := "-", "-"
		if !k.ActiveFrom.IsZero() && k.ActiveFrom.Unix() > 0 {
			from = k.ActiveFrom.UTC().Format(time.DateTime)
		}
		if !k.RetiresAt.IsZero() {
			until = k.RetiresAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.State, from, until)
	}
	return tw.Flush()
}

// startTokens loads the token keys (making the first one on an empty
// database) and follows rotations until the returned stop is called. A
// database that does not answer yet leaves the set empty, and not ready,
// until it does.
func startTokens(ctx context.Context, cfg Config, keys authd.Keys, users userStore, log *slog.Logger) (*token.Set, func(), error) {
	store, _ := users.(authd.KeyStore)
	if store == nil && cfg.TokenAlg != verify.HS256 && cfg.TokenKeyFile == "" {
		return nil, nil, fmt.Errorf("user store %T keeps no keys", users)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	set, err := token.Open(lctx, tokenSource(cfg, keys, store), tokenOptions(cfg, log))
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("token keys: %w", err)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		set.Run(rctx)
	}()
	return set, func() { stop(); <-done }, nil
}
