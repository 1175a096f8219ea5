package proof

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"

	"github.com/authd/authd"
)

// signatureLen is the length of a signature: hex of a SHA-256 sum.
const signatureLen = 2 * sha256.Size

// maxPooledMessage bounds the buffer a pooled state keeps, so one huge proof
// does not pin its memory for the life of the process.
const maxPooledMessage = 4 << 10

// HMAC is the seed-compatible signer: hex(HMAC-SHA256(SECRET_KEY, Message)).
// It is safe for concurrent use.
type HMAC struct {
	key  []byte
	pool sync.Pool // of *state
}

var _ authd.ProofSigner = (*HMAC)(nil)

// state is the per-call scratch space, pooled so that signing allocates only
// the returned string.
type state struct {
	mac hash.Hash // keyed with HMAC.key; Reset returns it to the keyed state
	msg []byte
	sum [sha256.Size]byte
	hex [signatureLen]byte
}

// NewHMAC returns a signer keyed with secret's UTF-8 bytes, as the original
// keyed it with SECRET_KEY.encode(). Whether secret is strong enough is the
// caller's decision (configuration rejects short keys unless told otherwise).
func NewHMAC(secret string) *HMAC {
	h := &HMAC{key: []byte(secret)}
	h.pool.New = func() any {
		return &state{mac: hmac.New(sha256.New, h.key), msg: make([]byte, 0, 256)}
	}
	return h
}

// sign leaves the lowercase hex signature of p in st.hex.
func (h *HMAC) sign(st *state, p authd.Proof) {
	st.msg = AppendMessage(st.msg[:0], p)
	st.mac.Reset()
	st.mac.Write(st.msg)
	hex.Encode(st.hex[:], st.mac.Sum(st.sum[:0]))
}

func (h *HMAC) get() *state { return h.pool.Get().(*state) }

func (h *HMAC) put(st *state) {
	if cap(st.msg) > maxPooledMessage {
		st.msg = make([]byte, 0, 256)
	}
	h.pool.Put(st)
}

// Signature returns the lowercase hex HMAC-SHA256 of Message(p).
func (h *HMAC) Signature(p authd.Proof) string {
	st := h.get()
	h.sign(st, p)
	s := string(st.hex[:])
	h.put(st)
	return s
}

// Sign returns p with its Signature set.
func (h *HMAC) Sign(p authd.Proof) authd.Proof {
	p.Signature = h.Signature(p)
	return p
}

// Verify reports whether p.Signature is the signature of p's other fields.
// It accepts exactly what the original emitted, 64 lowercase hex digits, and
// compares in constant time.
func (h *HMAC) Verify(p authd.Proof) bool {
	if len(p.Signature) != signatureLen {
		return false
	}
	st := h.get()
	h.sign(st, p)
	// The loop of subtle.ConstantTimeCompare, over the string directly so
	// that no []byte copy of it is allocated.
	var v byte
	for i := range signatureLen {
		v |= st.hex[i] ^ p.Signature[i]
	}
	h.put(st)
	return v == 0
}
