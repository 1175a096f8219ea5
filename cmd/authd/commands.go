package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/backend"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/jwt"
	"github.com/authd/authd/verify"
)

// commands are authd's commands, serve first (what `authd` alone runs),
// each longer name before its prefix (findCommand takes the first match).
var commands = []command{
	{name: "serve", needs: config.All, summary: "run the HTTP server (migrates the database first)",
		about:   "Runs authd: the HTTP API, the mail delivery worker, the metrics listener.",
		example: "POSTGRES_SERVER=db REDIS_HOST=redis SMTP_HOST=smtp authd serve",
		run:     func(ctx context.Context, x *invocation) error { return serve(ctx, x.cfg, x.log) }},
	{name: "migrate up", needs: config.Database, summary: "apply the database migrations",
		about:   "Applies the migrations under a lock: instances starting together are safe.",
		example: "authd migrate up", run: cmdMigrate},
	{name: "migrate status", needs: config.Database, summary: "list the migrations, applied or pending",
		about: "Lists the database migrations and whether each is applied.", example: "authd migrate status",
		run: func(ctx context.Context, x *invocation) error {
			db, err := backend.OpenDatabase(ctx, x.cfg, x.log)
			if err != nil {
				return err
			}
			defer db.Close()
			return db.MigrationStatus(ctx, x.stdout)
		}},
	{name: "migrate", needs: config.Database, summary: "apply the database migrations (= migrate up)",
		about:   "Applies the migrations under a lock: instances starting together are safe.",
		example: "authd migrate", run: cmdMigrate},
	{name: "users show", args: []string{"EMAIL"}, needs: config.Database, summary: "print the user of an address, as JSON",
		about:   "Prints the user of an address (the oldest of its case variants) as JSON.",
		example: "authd users show ana@example.com", run: cmdUsersShow},
	{name: "users delete", args: []string{"EMAIL"}, needs: config.Database | config.Redis | config.MasterKey,
		summary: "erase an address: user rows, codes, budgets, queued mail",
		about:   "Erases an address: its user rows (case variants too), its codes, cooldowns and budgets\nin every project, and its queued mails (never sent after) with their statuses.",
		example: "authd users delete ana@example.com", run: cmdUsersDelete},
	{name: "users duplicates", needs: config.Database, summary: "list the rows whose emails differ only in letter case",
		about:   "Lists the user rows the original service left in several letter cases; authd uses the\noldest of each group.",
		example: "authd users duplicates", run: cmdUsersDuplicates},
	{name: "users unlock", args: []string{"EMAIL"}, needs: config.Database | config.Redis, summary: "clear an address's failure and send budgets",
		about:   "Clears the failure and codes budgets of the address's mailbox: the way out of a lock-out.",
		example: "authd users unlock ana@example.com", run: cmdUsersUnlock},
	{name: "keys list", needs: config.Database | config.Tokens, summary: "list the token signing keys and their states",
		about:   "Lists the signing keys (signing, next, retiring, retired) from the stored rows alone:\nit needs no AUTHD_MASTER_KEY.",
		example: "authd keys list", run: func(ctx context.Context, x *invocation) error { return cmdKeys(ctx, x, false) }},
	{name: "keys rotate", needs: config.Database | config.MasterKey | config.Tokens,
		summary: "publish a new signing key now, sign with it after D",
		flags: []flagDef{{name: "delay", value: "D", wants: "a duration such as 5m (0 or more)", check: durationAtLeast(0),
			help: "when the new key starts signing; default JWKS_CACHE_SECONDS; 0 at once"}},
		about:   "Publishes a new signing key at once; it signs from D on, the old one stays published\nuntil its tokens have expired. Running instances follow within 5 s.",
		example: "authd keys rotate --delay 10m", run: func(ctx context.Context, x *invocation) error { return cmdKeys(ctx, x, true) }},
	{name: "keys reseal", needs: config.Database | config.MasterKey | config.Tokens | config.Policy,
		summary: "after a master-key rotation: rewrap what is stored under the new AUTHD_MASTER_KEY",
		about: "Rewraps the data key and reseals the signing keys that an AUTHD_MASTER_KEY_PREVIOUS key\n" +
			"sealed under AUTHD_MASTER_KEY; run it once every instance has the new key. Mail queued\n" +
			"before the rotation stays under the old key until it expires: the command says when\n" +
			"AUTHD_MASTER_KEY_PREVIOUS can go.",
		example: "authd keys reseal", run: cmdKeysReseal},
	{name: "proof verify", needs: config.Tokens | config.Issuer, summary: "check a v1 proof or a v2 token read on stdin",
		flags: []flagDef{
			{name: "audience", value: "P", wants: "a project_id", help: "the project_id it must be for", check: func(v string) error {
				if !authd.ValidProjectID(v) {
					return errors.New("bad project id")
				}
				return nil
			}},
			{name: "max-age", value: "D", wants: "a duration such as 15m", help: "the oldest v1 proof accepted",
				check: durationAtLeast(time.Second)},
			{name: "jwks", value: "URL", wants: "a URL", help: "the token keys (default AUTHD_ISSUER/.well-known/jwks.json)"},
		},
		about:   "Checks a v1 proof (the verify-code JSON, with SECRET_KEY) or a v2 token (the published\nkeys, or TOKEN_HS256_SECRET) read on stdin; a refusal prints its reason.",
		example: "authd proof verify --audience shop < proof.json", run: cmdProofVerify},
	{name: "clients secret", needs: config.Nothing, summary: "make a client secret for the hosted sign-in, and its hash for PROJECTS_FILE",
		about:   "Prints a new random client secret (32 bytes, hex), for a confidential client of the hosted\nsign-in, and the client_secret_sha256 line its project in PROJECTS_FILE takes: authd keeps\nthe hash only.",
		example: "authd clients secret", run: cmdClientsSecret},
	{name: "healthcheck", needs: config.HTTP, summary: "ask the server at HOST:PORT for readiness (exit 0 ready, 1 not)",
		about:   "Asks the server at HOST:PORT for readiness: the image's HEALTHCHECK (it has no curl).",
		example: "authd healthcheck", run: cmdHealthcheck},
	{name: "version", needs: config.Nothing, summary: "print the version", about: "Prints authd's version.", example: "authd version",
		run: func(_ context.Context, x *invocation) error {
			fmt.Fprintln(x.stdout, "authd", buildVersion())
			return nil
		}},
}

// openMigrated is the backend.Database, its migrations applied (under their lock):
// a command on a database authd has not started on yet finds its tables.
func openMigrated(ctx context.Context, cfg config.Config, log *slog.Logger) (backend.Database, error) {
	db, err := backend.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return db, nil
}

func cmdMigrate(ctx context.Context, x *invocation) error {
	db, err := backend.OpenDatabase(ctx, x.cfg, x.log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintln(x.stdout, "migrations applied")
	return nil
}

// byEmail maps the flow's refusal of a bad address to bad usage.
func byEmail(cmd string, err error) error {
	if authd.ErrorCode(err) == authd.EINVALID {
		return usageError{"authd " + cmd + ": not a valid address"}
	}
	return fmt.Errorf("authd %s: %w", cmd, err)
}

func cmdUsersShow(ctx context.Context, x *invocation) error {
	db, err := openMigrated(ctx, x.cfg, x.log)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := (&authd.Service{Users: db}).User(ctx, x.args[0])
	if authd.ErrorCode(err) == authd.ENOTFOUND {
		return fmt.Errorf("authd users show: no user for %s", strings.ToLower(x.args[0]))
	}
	if err != nil {
		return byEmail("users show", err)
	}
	out := map[string]any{"id": u.ID, "email": u.Email, "created_at": u.CreatedAt.UTC().Format(time.RFC3339)}
	if !u.LastVerifiedAt.IsZero() {
		out["last_verified_at"] = u.LastVerifiedAt.UTC().Format(time.RFC3339)
	}
	enc := json.NewEncoder(x.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func cmdUsersDuplicates(ctx context.Context, x *invocation) error {
	db, err := openMigrated(ctx, x.cfg, x.log)
	if err != nil {
		return err
	}
	defer db.Close()
	groups, err := db.CaseDuplicates(ctx)
	if err != nil {
		return fmt.Errorf("authd users duplicates: %w", err)
	}
	if len(groups) == 0 {
		fmt.Fprintln(x.stdout, "no case-variant duplicates")
	}
	for _, g := range groups {
		fmt.Fprintf(x.stdout, "%s: %d rows, the oldest is the one authd uses\n", strings.ToLower(g[0].Email), len(g))
		for _, u := range g {
			fmt.Fprintf(x.stdout, "  %s  %s  created %s\n", u.ID, u.Email, u.CreatedAt.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// service is the flow on the stores the configuration names (the
// database migrated), for the operator's commands; done closes them.
func (x *invocation) service(ctx context.Context) (_ *authd.Service, done func(), err error) {
	db, err := openMigrated(ctx, x.cfg, x.log)
	if err != nil {
		return nil, nil, err
	}
	keyring := &authd.Keyring{Masters: x.cfg.MasterKeys()}
	codes, err := backend.OpenCodes(ctx, x.cfg, x.log)
	if err == nil {
		err = keyring.Load(ctx, db, -1)
	}
	if err != nil {
		if codes.Close != nil {
			codes.Close()
		}
		db.Close()
		return nil, nil, err
	}
	return &authd.Service{Codes: codes.CodeStore, Users: db, Keys: keyring, Logger: x.log},
		func() { codes.Close(); db.Close() }, nil
}

func cmdUsersDelete(ctx context.Context, x *invocation) error {
	svc, done, err := x.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	er, err := svc.EraseAddress(ctx, x.args[0])
	if er.Email != "" {
		fmt.Fprintf(x.stdout, "deleted %d user row(s) of %s\n", er.Users, er.Email)
	}
	if err != nil {
		return byEmail("users delete", err)
	}
	if x.cfg.RedisURL == "" {
		fmt.Fprintln(x.stdout, "codes and limits: kept in the server's memory in this mode; they vanish at its restart or within OTP_EXPIRE_SECONDS and an hour")
		return nil
	}
	fmt.Fprintf(x.stdout, "deleted %d Redis key(s): codes, cooldowns and budgets; queued mails removed\n", er.Codes)
	return nil
}

func cmdUsersUnlock(ctx context.Context, x *invocation) error {
	if x.cfg.RedisURL == "" {
		return errors.New("authd users unlock: no Redis configured: the embedded mode keeps budgets in the server's memory; restarting it clears them")
	}
	var err error
	if x.cfg, err = x.load(config.Database | config.Redis | config.MasterKey); err != nil {
		return err
	}
	svc, done, err := x.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := svc.Unlock(ctx, x.args[0]); err != nil {
		return byEmail("users unlock", err)
	}
	fmt.Fprintln(x.stdout, "unlocked")
	return nil
}

// cmdKeys is `authd keys list`, and `authd keys rotate` before it.
func cmdKeys(ctx context.Context, x *invocation, rotate bool) error {
	cfg := x.cfg
	switch {
	case cfg.TokenAlg == verify.HS256:
		return errors.New("authd keys: TOKEN_ALG=HS256 signs with TOKEN_HS256_SECRET: no keys to list or rotate (change the secret to rotate)")
	case cfg.TokenKeyFile != "" && rotate:
		return errors.New("authd keys rotate: TOKEN_KEY_FILE is set: put a new key first in the file and keep the old one after it until its tokens have expired")
	case cfg.TokenKeyFile != "":
		infos, err := jwt.List(ctx, jwt.FileSource{Path: cfg.TokenKeyFile}, time.Now(), cfg.TokenTTL)
		if err != nil {
			return fmt.Errorf("authd keys list: %w", err)
		}
		return jwt.WriteKeys(x.stdout, infos)
	}
	db, err := openMigrated(ctx, cfg, x.log)
	if err != nil {
		return err
	}
	defer db.Close()
	if rotate {
		_, token := authd.SealKeys(cfg.MasterKeys())
		k, err := (&jwt.StoreSource{Store: db, Key: token[0], Old: token[1:]}).Rotate(ctx, x.duration("delay", cfg.JWKSMaxAge), cfg.TokenTTL)
		if err != nil {
			return fmt.Errorf("authd keys rotate: %w", err)
		}
		fmt.Fprintf(x.stdout, "new key %s published; it signs from %s (running instances follow within 5 s)\n",
			k.ID, k.ActiveFrom.Format(time.RFC3339))
	}
	infos, err := jwt.ListStored(ctx, db, time.Now(), cfg.TokenTTL)
	switch {
	case err != nil:
		return fmt.Errorf("authd keys: %w", err)
	case len(infos) == 0:
		fmt.Fprintln(x.stdout, "no keys yet: the first start of authd makes one")
		return nil
	}
	return jwt.WriteKeys(x.stdout, infos)
}

// cmdKeysReseal is `authd keys reseal`: the end of a master-key rotation.
func cmdKeysReseal(ctx context.Context, x *invocation) error {
	cfg := x.cfg
	db, err := openMigrated(ctx, cfg, x.log)
	if err != nil {
		return err
	}
	defer db.Close()
	rewrapped, err := (&authd.Keyring{Masters: cfg.MasterKeys()}).Reseal(ctx, db)
	if err != nil {
		return fmt.Errorf("authd keys reseal: %w", err)
	}
	fmt.Fprintln(x.stdout, map[bool]string{true: "data key: rewrapped under AUTHD_MASTER_KEY",
		false: "data key: already under AUTHD_MASTER_KEY"}[rewrapped])
	if cfg.TokenAlg != verify.HS256 && cfg.TokenKeyFile == "" {
		_, token := authd.SealKeys(cfg.MasterKeys())
		resealed, current, err := (&jwt.StoreSource{Store: db, Key: token[0], Old: token[1:]}).Reseal(ctx)
		if err != nil {
			return fmt.Errorf("authd keys reseal: %w", err)
		}
		fmt.Fprintf(x.stdout, "signing keys: %d resealed, %d already under AUTHD_MASTER_KEY\n", resealed, current)
	}
	if len(cfg.PreviousMasterKeys) == 0 {
		return nil
	}
	// Mail queued before the rotation is sealed under the old key, and
	// lives no longer than its code.
	ttl := cfg.Policy.CodeTTL
	for _, p := range cfg.Projects.All() {
		ttl = max(ttl, p.Policy.CodeTTL)
	}
	fmt.Fprintf(x.stdout, "queued mail sealed under the old key expires by %s: remove AUTHD_MASTER_KEY_PREVIOUS after that, once every instance has restarted with the new key\n",
		time.Now().Add(ttl).UTC().Format(time.RFC3339))
	return nil
}

// cmdProofVerify checks a proof or a token as a consumer would, with the
// verify package: exit 0 and what it asserts when valid, 1 and the reason
// when not.
func cmdProofVerify(ctx context.Context, x *invocation) error {
	cfg, audience := x.cfg, x.flags["audience"]
	raw, err := io.ReadAll(io.LimitReader(x.stdin, 64<<10))
	if err != nil {
		return err
	}
	text := strings.TrimSpace(string(raw))
	if strings.HasPrefix(text, "{") {
		var p authd.Proof
		if err := json.Unmarshal([]byte(text), &p); err != nil {
			return fmt.Errorf("authd proof verify: INVALID: %s", verify.ReasonMalformed)
		}
		// A v1 proof carries no expiry: without --max-age only the
		// signature and the fields are checked. Only a v1 proof needs
		// SECRET_KEY.
		maxAge := x.duration("max-age", 100*365*24*time.Hour)
		pk, err := x.load(config.ProofKey)
		if err != nil {
			return err
		}
		if err := verify.NewProofVerifier(pk.SecretKey, maxAge).Verify(p, audience); err != nil {
			return fmt.Errorf("authd proof verify: INVALID: %s", reasonOf(err))
		}
		fmt.Fprintf(x.stdout, "valid v1 proof: auth_user_id=%s email=%s project_id=%s issued_at=%s\n",
			p.AuthUserID, p.Email, p.ProjectID, time.Unix(p.IssuedAt, 0).UTC().Format(time.RFC3339))
		return nil
	}
	v := &verify.TokenVerifier{Issuer: cfg.Issuer, Audience: audience, AnyAudience: audience == ""}
	switch jwks := x.flags["jwks"]; {
	case cfg.TokenAlg == verify.HS256:
		v.Keys = verify.SharedSecret(cfg.HS256Secret)
	case jwks != "":
		v.Keys = verify.NewJWKS(jwks)
	default:
		v.Keys = verify.NewJWKS(strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/jwks.json")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := v.Verify(ctx, text)
	if err != nil {
		return fmt.Errorf("authd proof verify: INVALID: %s", reasonOf(err))
	}
	fmt.Fprintf(x.stdout, "valid token: sub=%s email=%s aud=%s iss=%s expires=%s\n",
		c.Subject, c.Email, strings.Join(c.Audience, ","), c.Issuer, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	return nil
}

// reasonOf is the verify package's reason, or the error itself when it is
// not a refusal (a verifier set up wrong).
func reasonOf(err error) string {
	var e *verify.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return err.Error()
}

// cmdHealthcheck asks the server at HOST:PORT for readiness. It writes
// nothing: development mode's secrets are not generated by it.
func cmdHealthcheck(ctx context.Context, x *invocation) error {
	body, err := httpapi.AskReady(ctx, x.cfg.Host, x.cfg.Port)
	if err != nil {
		return fmt.Errorf("authd healthcheck: %v", err)
	}
	fmt.Fprintf(x.stdout, "ready: %s\n", body)
	return nil
}

// cmdClientsSecret makes a client secret and the registry line of its
// hash (README, "Sign in with authd").
func cmdClientsSecret(_ context.Context, x *invocation) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	secret := hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(secret))
	fmt.Fprintf(x.stdout, "client_secret: %s\nclient_secret_sha256: %s\n", secret, hex.EncodeToString(sum[:]))
	return nil
}
