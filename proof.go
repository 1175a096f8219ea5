package authd

// Proof is the original service's identity proof, the verify-code answer of
// /api/v1. Field order and names are frozen.
type Proof struct {
	AuthUserID string `json:"auth_user_id"`
	Email      string `json:"email"`
	ProjectID  string `json:"project_id"`
	Verified   bool   `json:"verified"`
	IssuedAt   int64  `json:"issued_at"`
	Signature  string `json:"signature"`
}

// ProofSigner computes a proof's signature. Implementation: internal/proof.
type ProofSigner interface {
	// Signature returns the signature of every field of p but Signature.
	Signature(p Proof) string
}
