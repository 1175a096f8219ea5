package verify

import (
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/proof"
)

// ProofVerifier checks v1 proofs: the original service's HMAC-SHA256 with
// SECRET_KEY, which carries no expiry of its own, so the verifier bounds its
// age. It is safe for concurrent use.
type ProofVerifier struct {
	mac    *proof.HMAC
	maxAge time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leeway tolerates clocks that disagree: an issued_at up to Leeway in
	// the future is accepted. Zero means 30 s.
	Leeway time.Duration
}

// NewProofVerifier returns a verifier for proofs signed with secretKey
// (authd's SECRET_KEY) and no older than maxAge (15 minutes is a good
// default).
func NewProofVerifier(secretKey string, maxAge time.Duration) *ProofVerifier {
	return &ProofVerifier{mac: proof.NewHMAC(secretKey), maxAge: maxAge}
}

// Verify checks p's signature, that it says verified, that it is fresh,
// and, when audience is not "", that it was issued for that project_id.
//
// Errors (*Error): ReasonMalformed, ReasonBadSignature, ReasonNotVerified,
// ReasonExpired, ReasonNotYetValid, ReasonWrongAudience.
func (v *ProofVerifier) Verify(p authd.Proof, audience string) error {
	return v.VerifyMaxAge(p, audience, v.maxAge)
}

// VerifyMaxAge is Verify with another maximum age.
//
// Errors: as Verify's.
func (v *ProofVerifier) VerifyMaxAge(p authd.Proof, audience string, maxAge time.Duration) error {
	if p.AuthUserID == "" || p.Email == "" || p.ProjectID == "" || p.IssuedAt == 0 || p.Signature == "" {
		return refuse(ReasonMalformed, nil)
	}
	// The signature first: nothing else about an unsigned proof is worth
	// reporting.
	if !v.mac.Verify(p) {
		return refuse(ReasonBadSignature, nil)
	}
	if !p.Verified {
		return refuse(ReasonNotVerified, nil)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	issued := time.Unix(p.IssuedAt, 0)
	if issued.After(now.Add(leeway)) {
		return refuse(ReasonNotYetValid, nil)
	}
	if now.Sub(issued) > maxAge {
		return refuse(ReasonExpired, nil)
	}
	if audience != "" && p.ProjectID != audience {
		return refuse(ReasonWrongAudience, nil)
	}
	return nil
}
