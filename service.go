package authd

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"time"
)

// Service is the send-code / verify-code flow, and the operations around
// it that an operator runs (unlock, erase): the only business logic of
// authd. Its fields are its dependencies; cmd/authd wires them.
type Service struct {
	Codes  CodeStore // codes, limits, and the mail queue
	Users  UserStore
	Sealer JobSealer // encrypts each mail job before it is stored
	Signer ProofSigner
	Policy Policy
	Keys   KeySource // Keys, or a server's Keyring

	// Tokens signs the v2 identity tokens (JWT). Nil: no tokens, v1 proofs
	// only.
	Tokens TokenIssuer

	// ProjectName returns the display name used in mails for a project_id
	// when there is no registry. Nil: a fixed name, never the raw project_id.
	ProjectName func(projectID string) string
	// Projects, when set, is the registry (PROJECTS_FILE): unknown
	// projects are refused, known ones bring their name and limits.
	Projects *Registry
	// Mail, when set, holds send-code back while mail delivery is behind
	// (MAIL_MAX_LAG). Nil: never.
	Mail MailBacklog

	// SignIns keeps the hosted sign-ins, authorization codes and access
	// tokens (signin.go). Nil: no hosted sign-in.
	SignIns SignInStore
	// Issuer is AUTHD_ISSUER: the base of the links mailed for a hosted
	// sign-in and the iss of its redirects.
	Issuer string
	// AccessTTL is the access tokens' lifetime (0: an hour).
	AccessTTL time.Duration

	Now    func() time.Time // nil: time.Now
	Rand   io.Reader        // nil: crypto/rand
	Logger *slog.Logger     // nil: slog.Default()

	budget mailBudget // LIMIT_MAILS_TOTAL as this instance sees it (budget.go)
}

// SendRequest asks for a code to be mailed to Email for ProjectID.
type SendRequest struct {
	Email     string
	ProjectID string
	ClientIP  string

	// Lang is the mail's language ("" the default).
	Lang string
	// Link, when set, makes the mail carry a link to sign in with beside
	// the code: the hosted sign-in's (signin.go).
	Link func(code string) string
	// SignIn issues the code of a hosted sign-in: kept apart from the
	// project's API codes (SignInProject), so /api/*/verify-code cannot
	// take it; the mailbox's budgets are shared all the same.
	SignIn bool
}

// SendResult is what a successful SendCode reports.
type SendResult struct {
	ExpiresIn   time.Duration
	ResendAfter time.Duration
	CodeID      string
	DeliveryID  string // the mail's delivery status handle (Service.Delivery)
	IP          LimitState
}

// VerifyRequest asks to verify Code for (Email, ProjectID).
type VerifyRequest struct {
	Email     string
	ProjectID string
	Code      string
	ClientIP  string

	// WantToken asks for a signed identity token beside the proof (v2).
	WantToken bool
	// Nonce is the client's own value, bound into the token ("" for none).
	Nonce string
	// SignIn verifies a hosted sign-in's code (SendRequest.SignIn).
	SignIn bool
}

// SignInProject is the code store's project of client's hosted sign-ins:
// a name no project_id can be (ValidProjectID allows no '/'), so that a
// sign-in's code, which must come with number matching on another
// device, is never taken by the API's verify-code for project_id=client.
func SignInProject(client string) string { return client + "/signin" }

// codeProject is the code store's project of a request for projectID.
func codeProject(projectID string, signIn bool) string {
	if signIn {
		return SignInProject(projectID)
	}
	return projectID
}

// VerifyResult is a successful verification: the signed v1 proof and the
// user it names.
type VerifyResult struct {
	Proof Proof
	User  User
	IP    LimitState
	// Token is set when the request asked for one and Tokens is set.
	Token Token
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) rand() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// SendCode issues a new code for (Email, ProjectID), replacing any live one,
// and queues its mail in the same atomic write. The answer does not depend on whether the
// address has an account.
//
// Errors: EINVALID (Field says which), ERATELIMITED, EUNAVAILABLE (also
// MailBehind's, before anything is stored or counted).
func (s *Service) SendCode(ctx context.Context, req SendRequest) (SendResult, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return SendResult{}, err
	}
	proj, err := s.project(req.ProjectID)
	if err != nil {
		return SendResult{}, err
	}
	// A code whose mail comes after its user has given up is worse than a
	// 503 now: the user would wait, ask again into the cooldown, and the
	// budgets would be spent for nothing.
	if s.Mail != nil {
		if over := s.Mail.Behind(); over > 0 {
			return SendResult{}, MailBehind(over)
		}
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return SendResult{}, err
	}
	code, err := NewCode(s.rand(), CodeLength)
	if err != nil {
		return SendResult{}, &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	id, err := NewID(s.rand())
	if err != nil {
		return SendResult{}, &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	addr := keys.AddressOf(email)
	deliveryID, err := NewDeliveryID(s.rand(), addr.Partition())
	if err != nil {
		return SendResult{}, &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	now := s.now()
	p := proj.Policy
	cp := codeProject(req.ProjectID, req.SignIn)
	rec := CodeRecord{ID: id, Hash: CodeHash(keys.Code, cp, email, code), ExpiresAt: now.Add(p.CodeTTL)}
	msg := Message{
		To: email, ProjectID: req.ProjectID, ProjectName: proj.DisplayName, Code: code,
		TTL: p.CodeTTL, ExpiresAt: rec.ExpiresAt, Address: addr, CodeID: id,
		ReplaceableAt: now.Add(p.ResendCooldown), Lang: req.Lang,
	}
	if req.Link != nil {
		msg.Link = req.Link(code)
	}
	// The code reaches the store only sealed: at rest it exists as a hash
	// and inside this ciphertext, nowhere else.
	sealed, err := s.Sealer.Seal(deliveryID, msg)
	if err != nil {
		return SendResult{}, err
	}
	res, err := s.Codes.IssueCode(ctx, IssueRequest{
		Address: addr, Project: cp, MailsProject: req.ProjectID, ClientIP: req.ClientIP, Record: rec, Now: now,
		ResendCooldown: p.ResendCooldown, CodesPerAddress: p.CodesPerAddress,
		SendPerIP: p.SendPerIP, MailsTotal: p.MailsTotal, MailsPerProject: p.MailsPerProject,
		Job: &MailJob{
			DeliveryID: deliveryID, Address: addr, Project: cp, CodeID: id,
			ExpiresAt: rec.ExpiresAt, ReplaceableAt: msg.ReplaceableAt, Sealed: sealed,
		},
	})
	if err != nil {
		if e, ok := err.(*Error); ok && e.Limit == "mails_total" {
			s.budgetSpent(e.RetryAfter, now)
		}
		return SendResult{IP: limitOnError(res.IP, p.SendPerIP, "send_per_ip", err)}, err
	}
	s.budgetSent(res.Mails, now)
	return SendResult{ExpiresIn: p.CodeTTL, ResendAfter: p.ResendCooldown, CodeID: id, DeliveryID: deliveryID, IP: res.IP}, nil
}

// VerifyCode checks Code for (Email, ProjectID) and, on success, records the
// user and returns a signed proof. If the user cannot be recorded, the code is
// restored so the user can retry with it.
//
// Errors: EINVALID, ECODE (one answer for every failure), ERATELIMITED,
// EUNAVAILABLE.
func (s *Service) VerifyCode(ctx context.Context, req VerifyRequest) (VerifyResult, error) {
	email, err := NormalizeEmail(req.Email)
	if err != nil {
		return VerifyResult{}, err
	}
	proj, err := s.project(req.ProjectID)
	if err != nil {
		return VerifyResult{}, err
	}
	if !ValidCode(req.Code, CodeLength) {
		return VerifyResult{}, &Error{Code: EINVALID, Field: "code", Message: "code must be 6 digits"}
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return VerifyResult{}, err
	}
	now := s.now()
	p := proj.Policy
	addr := keys.AddressOf(email)
	cp := codeProject(req.ProjectID, req.SignIn)
	res, err := s.Codes.ConsumeCode(ctx, ConsumeRequest{
		Address: addr, Project: cp, ClientIP: req.ClientIP,
		Hash: CodeHash(keys.Code, cp, email, req.Code), Now: now,
		AttemptsPerCode: p.AttemptsPerCode, FailuresPerAddress: p.FailuresPerAddress, VerifyPerIP: p.VerifyPerIP,
	})
	if err != nil {
		return VerifyResult{IP: limitOnError(res.IP, p.VerifyPerIP, "verify_per_ip", err)}, err
	}
	user, err := s.Users.UpsertVerified(ctx, email, now)
	if err != nil {
		// Give the code back: the user did nothing wrong.
		s.restore(ctx, addr, cp, res.Record, now, "user store")
		return VerifyResult{}, unavailable("user store", err)
	}
	proof := Proof{
		AuthUserID: user.ID, Email: email, ProjectID: req.ProjectID,
		Verified: true, IssuedAt: now.Unix(),
	}
	proof.Signature = s.Signer.Signature(proof)
	out := VerifyResult{Proof: proof, User: user, IP: res.IP}
	if req.WantToken && s.Tokens != nil {
		tok, err := s.Tokens.IssueToken(ctx, TokenClaims{
			Subject: user.ID, Audience: req.ProjectID, Email: email, Nonce: req.Nonce, IssuedAt: now,
		})
		if err != nil {
			// Signing is in memory and fails only without a loaded key or
			// randomness: give the code back, as for a user store failure.
			s.restore(ctx, addr, cp, res.Record, now, "token signer")
			return VerifyResult{}, unavailable("token signer", err)
		}
		out.Token = tok
	}
	return out, nil
}

// restore puts back a code consumed by a verification that could not be
// completed because of what failed. It uses a context of its own: the
// request's may be what failed.
func (s *Service) restore(ctx context.Context, address Address, project string, rec CodeRecord, now time.Time, what string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.Codes.RestoreCode(rctx, address, project, rec, now); err != nil {
		s.logger().ErrorContext(ctx, "code not restored after a "+what+" failure", "err", err)
	}
}

// unavailable is err as an EUNAVAILABLE answer: as it is when it already is
// one, else wrapped as what's.
func unavailable(what string, err error) error {
	if ErrorCode(err) == EUNAVAILABLE {
		return err
	}
	return Unavailable(what, err)
}

// Unlock clears the failure and codes-per-address budgets of an address's
// mailbox (its aliases share them): the operator's way out of a lock-out.
//
// Errors: EINVALID, EUNAVAILABLE.
func (s *Service) Unlock(ctx context.Context, email string) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return err
	}
	return s.Codes.Unlock(ctx, keys.AddressOf(email).Mailbox)
}

// Erasure is what EraseAddress deleted.
type Erasure struct {
	Email string // the normalised address
	Users int    // user rows, case variants included
	Codes int    // codes, cooldowns and budgets; queued mails are not counted
}

// EraseAddress erases an address on request: its user rows (case variants
// too), then everything the code store keeps of it — live codes and
// cooldowns in every project, its mailbox's budgets, and mails still
// queued, which are then never sent.
//
// Errors: EINVALID; EUNAVAILABLE (when the code store fails after the user
// rows were deleted, the Erasure says how many were).
func (s *Service) EraseAddress(ctx context.Context, email string) (Erasure, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Erasure{}, err
	}
	keys, err := s.Keys.Current()
	if err != nil {
		return Erasure{}, err
	}
	out := Erasure{Email: email}
	if out.Users, err = s.Users.DeleteByEmail(ctx, email); err != nil {
		return out, err
	}
	if out.Codes, err = s.Codes.EraseAddress(ctx, keys.AddressOf(email)); err != nil {
		return out, err
	}
	return out, nil
}

// User returns the user of an address: the oldest of its case variants.
//
// Errors: EINVALID, ENOTFOUND, EUNAVAILABLE.
func (s *Service) User(ctx context.Context, email string) (User, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	return s.Users.FindByEmail(ctx, email)
}

// Delivery returns the status of the mail named id.
//
// Errors: ENOTFOUND (also for an id that is not 32 hex digits), EUNAVAILABLE.
func (s *Service) Delivery(ctx context.Context, id string) (Delivery, error) {
	if !validDeliveryID(id) {
		return Delivery{}, ErrNoDelivery
	}
	return s.Codes.Delivery(ctx, id, s.now())
}

// project resolves a request's project_id: refused when a registry exists
// and does not list it.
func (s *Service) project(id string) (Project, error) {
	if !ValidProjectID(id) {
		return Project{}, &Error{Code: EINVALID, Field: "project_id", Message: "project_id must be 1-64 characters of A-Z a-z 0-9 . _ -"}
	}
	if s.Projects == nil {
		name := "your account"
		if s.ProjectName != nil {
			name = s.ProjectName(id)
		}
		return Project{ID: id, DisplayName: name, Policy: s.Policy}, nil
	}
	p, ok := s.Projects.Lookup(id)
	if !ok {
		// Project ids are not secrets: say plainly that this one is unknown,
		// so an integrator sees the typo.
		return Project{}, &Error{Code: EINVALID, Field: "project_id", Message: "Unknown project_id: it is not in authd's project registry"}
	}
	return p, nil
}

// limitOnError is the client-IP limit's state beside a refusal, for the
// RateLimit-* headers: the store's when it reported one, and when the IP
// limit itself refused, empty until RetryAfter.
func limitOnError(st LimitState, r Rate, ipLimit string, err error) LimitState {
	var e *Error
	if errors.As(err, &e) && e.Code == ERATELIMITED && e.Limit == ipLimit && !r.Off() {
		return LimitState{Limit: r.N, Remaining: 0, Reset: e.RetryAfter}
	}
	return st
}
