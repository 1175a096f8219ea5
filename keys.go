package authd

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Keys are the keys authd derives, each with its own HKDF label. Code and
// Address name and protect live state in the code store (codes,
// cooldowns, budgets), so they come from the data key, which a master-key
// rotation keeps (Keyring). Mail and Token seal what is stored, so they
// come from AUTHD_MASTER_KEY itself: a new master key seals under a new
// key at once, and what the previous ones sealed still opens with
// OldMail and OldToken. None of them is ever derived from SECRET_KEY,
// which every consumer of the v1 proof holds.
type Keys struct {
	Code    []byte // hashes codes at rest
	Address []byte // names addresses in the code store
	Mail    []byte // encrypts queued mail jobs
	Token   []byte // encrypts JWT private keys at rest
	SignIn  []byte // seals hosted sign-ins, grants and access tokens at rest; keys their form tokens

	// OldMail and OldToken are the Mail and Token keys of the previous
	// master keys (AUTHD_MASTER_KEY_PREVIOUS), newest first: they open,
	// they never seal.
	OldMail, OldToken [][]byte
}

// Current implements KeySource: fixed keys are always current.
func (k Keys) Current() (Keys, error) { return k, nil }

// KeySource gives the flow its keys when it needs them: Keys for fixed
// ones, a Keyring for a server, whose data key comes from the database.
type KeySource interface {
	// Current returns the keys. Errors: EUNAVAILABLE while they are not
	// known yet.
	Current() (Keys, error)
}

// DeriveKeys derives the Keys of one master key that is its own data key:
// what authd did before master keys could rotate, and what a Keyring's
// first data key keeps.
func DeriveKeys(master []byte) (Keys, error) { return deriveKeys(master, [][]byte{master}) }

// deriveKeys derives Code and Address from data, Mail and Token from the
// first master key, OldMail and OldToken from the others.
func deriveKeys(data []byte, masters [][]byte) (Keys, error) {
	for _, m := range append([][]byte{data}, masters...) {
		if len(m) < 32 {
			return Keys{}, fmt.Errorf("master key: want at least 32 bytes, got %d", len(m))
		}
	}
	mail, token := SealKeys(masters)
	return Keys{
		Code: derive(data, "code-hash"), Address: derive(data, "address-key"), SignIn: derive(data, "signin"),
		Mail: mail[0], Token: token[0], OldMail: mail[1:], OldToken: token[1:],
	}, nil
}

// SealKeys returns the Mail and Token keys of each master key, in the
// same order (the current one first). They need no data key: a server
// seals and opens before its database answers.
func SealKeys(masters [][]byte) (mail, token [][]byte) {
	for _, m := range masters {
		mail = append(mail, derive(m, "mail-job"))
		token = append(token, derive(m, "token-key"))
	}
	return mail, token
}

func derive(secret []byte, label string) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, "authd/v1/"+label, 32)
	if err != nil { // only for lengths HKDF-SHA256 cannot give; 32 it always can
		panic(err)
	}
	return k
}

// AddressKey names a normalised address in the code store without revealing
// it: a leaked store dump shows neither codes nor addresses.
func AddressKey(key []byte, address string) string {
	var sum [sha256.Size]byte
	buf := make([]byte, 0, 256)
	withMAC(key, func(m hash.Hash) {
		m.Write(append(buf, address...))
		m.Sum(sum[:0])
	})
	return hex.EncodeToString(sum[:16])
}

// DataKeyStore keeps the wrapped data key in the database, one for every
// instance. Implementations: internal/postgres, internal/sqlite.
type DataKeyStore interface {
	// EnsureDataKey returns the stored wrapped data key. When none is
	// stored it stores what gen returns first; of instances starting
	// together, one's is stored and every one gets it.
	//
	// Errors: EUNAVAILABLE, or gen's error as it is.
	EnsureDataKey(ctx context.Context, gen func() ([]byte, error)) ([]byte, error)

	// ReplaceDataKey stores next in place of prev.
	//
	// Errors: EINVALID when what is stored is not prev (another replace
	// came first), EUNAVAILABLE.
	ReplaceDataKey(ctx context.Context, prev, next []byte) error
}

// ErrMasterKeyOpensNothing is a master key under which nothing stored
// opens: a start with it would orphan every signing key and live code.
var ErrMasterKeyOpensNothing = &Error{Code: EINTERNAL, Message: "AUTHD_MASTER_KEY opens nothing stored: " +
	"the database's keys were sealed under another master key, and no key of AUTHD_MASTER_KEY_PREVIOUS opens them either. " +
	"Set AUTHD_MASTER_KEY back to the key in use, or, to rotate, set the new one and keep the old one in AUTHD_MASTER_KEY_PREVIOUS " +
	`(README, "Rotating the master key")`}

// A Keyring is the KeySource of a server: the master keys (the current
// one, then AUTHD_MASTER_KEY_PREVIOUS), and the data key they wrap, read
// from the database by Load. Until Load succeeds Current answers
// EUNAVAILABLE.
//
// The data key is an envelope: the first Load on a database stores the
// current master key itself as the data key, wrapped under it, so the
// keys derived before rotation existed stay the same. A rotation rewraps
// it (Reseal) and never changes it, so live codes, cooldowns and failure
// budgets survive every rotation.
type Keyring struct {
	Masters [][]byte // the current master key first; at least one
	Rand    io.Reader

	keys atomic.Pointer[Keys]
	// wrappedUnder is the index in Masters of the key that wraps the
	// stored data key, once loaded.
	wrappedUnder atomic.Int32
}

// Current implements KeySource.
func (r *Keyring) Current() (Keys, error) {
	if k := r.keys.Load(); k != nil {
		return *k, nil
	}
	return Keys{}, Unavailable("keys", errors.New("the data key is not loaded yet: the database has not answered"))
}

// Load reads the wrapped data key from store and opens it with the
// master keys. When none is stored yet (a new database, or one from
// before master keys could rotate), it stores the first: the master key
// that was in use until now, Masters[first], so that live codes and
// budgets keep their keys. first is the index of the master key the
// stored signing keys open under, or -1 when that is not known (nothing
// sealed is stored); with a single master key it is that one, and with
// several and first unknown Load refuses (ErrDataKeyUnknown) rather than
// guess.
//
// Errors: EUNAVAILABLE; ErrMasterKeyOpensNothing when no master key opens
// the stored data key; ErrDataKeyUnknown.
func (r *Keyring) Load(ctx context.Context, store DataKeyStore, first int) error {
	if first < 0 && len(r.Masters) == 1 {
		first = 0
	}
	wrapped, err := store.EnsureDataKey(ctx, func() ([]byte, error) {
		if first < 0 || first >= len(r.Masters) {
			return nil, ErrDataKeyUnknown
		}
		return WrapDataKey(r.Masters[0], r.Masters[first], r.Rand)
	})
	if err != nil {
		return err
	}
	data, under, err := UnwrapDataKey(r.Masters, wrapped)
	if err != nil {
		return err
	}
	k, err := deriveKeys(data, r.Masters)
	if err != nil {
		return err
	}
	r.wrappedUnder.Store(int32(under))
	r.keys.Store(&k)
	return nil
}

// ErrDataKeyUnknown is a first start on this version with
// AUTHD_MASTER_KEY_PREVIOUS set and nothing sealed to tell which master key
// the live codes were made under.
var ErrDataKeyUnknown = &Error{Code: EINTERNAL, Message: "no data key is stored yet and AUTHD_MASTER_KEY_PREVIOUS is set: " +
	"authd cannot tell which master key the live codes and budgets are under. Start once with the key in use as AUTHD_MASTER_KEY " +
	`and no AUTHD_MASTER_KEY_PREVIOUS, then rotate (README, "Rotating the master key")`}

// WrappedUnder is the index in Masters of the key that wraps the stored
// data key (0: the current one), as the last Load saw it.
func (r *Keyring) WrappedUnder() int { return int(r.wrappedUnder.Load()) }

// Reseal rewraps the stored data key under the current master key, if a
// previous one wraps it. It reports whether it rewrapped.
//
// Errors: EUNAVAILABLE, EINVALID (another reseal ran at the same time),
// ErrMasterKeyOpensNothing.
func (r *Keyring) Reseal(ctx context.Context, store DataKeyStore) (bool, error) {
	wrapped, err := store.EnsureDataKey(ctx, func() ([]byte, error) {
		if len(r.Masters) > 1 {
			return nil, ErrDataKeyUnknown
		}
		return WrapDataKey(r.Masters[0], r.Masters[0], r.Rand)
	})
	if err != nil {
		return false, err
	}
	data, under, err := UnwrapDataKey(r.Masters, wrapped)
	if err != nil || under == 0 {
		return false, err
	}
	next, err := WrapDataKey(r.Masters[0], data, r.Rand)
	if err != nil {
		return false, err
	}
	if err := store.ReplaceDataKey(ctx, wrapped, next); err != nil {
		return false, err
	}
	return true, nil
}

// dataKeyVersion starts every wrapped data key, so that another format
// can follow.
const dataKeyVersion = 1

// WrapDataKey seals data under master's wrapping key: a version byte, a
// random 24-byte nonce from r (nil: crypto/rand), then XChaCha20-Poly1305.
func WrapDataKey(master, data []byte, r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	aead, err := chacha20poly1305.NewX(derive(master, "data-key-wrap"))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(data)+aead.Overhead())
	out[0] = dataKeyVersion
	if _, err := io.ReadFull(r, out[1:]); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "random source failed", Err: err}
	}
	return aead.Seal(out, out[1:], data, out[:1]), nil
}

// UnwrapDataKey opens what WrapDataKey made with the first of masters
// that opens it, and says which.
//
// Errors: ErrMasterKeyOpensNothing.
func UnwrapDataKey(masters [][]byte, wrapped []byte) (data []byte, under int, err error) {
	for i, m := range masters {
		aead, err := chacha20poly1305.NewX(derive(m, "data-key-wrap"))
		if err != nil {
			return nil, 0, err
		}
		if len(wrapped) < 1+aead.NonceSize()+aead.Overhead() || wrapped[0] != dataKeyVersion {
			return nil, 0, &Error{Code: EINTERNAL, Message: "the stored data key is not one authd wrapped"}
		}
		nonce := wrapped[1 : 1+aead.NonceSize()]
		if data, err := aead.Open(nil, nonce, wrapped[1+aead.NonceSize():], wrapped[:1]); err == nil {
			return data, i, nil
		}
	}
	return nil, 0, ErrMasterKeyOpensNothing
}
