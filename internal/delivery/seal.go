package delivery

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/authd/authd"
)

// Sealer is the authd.JobSealer: XChaCha20-Poly1305 (24-byte random nonces,
// safe for billions of messages under one key) with the mail key derived
// from AUTHD_MASTER_KEY, the delivery id as associated data so that a
// sealed job cannot be passed off as another's. It seals under the
// current key and opens with it or any previous one (a master-key
// rotation: jobs queued before it still go out).
type Sealer struct {
	key  []byte
	old  [][]byte
	rand io.Reader
}

var _ authd.JobSealer = (*Sealer)(nil)

// NewSealer returns a Sealer with key (authd.Keys.Mail, 32 bytes) drawing
// nonces from r (nil: crypto/rand). What the old keys (authd.Keys.OldMail)
// sealed opens too.
func NewSealer(key []byte, r io.Reader, old ...[]byte) (*Sealer, error) {
	for _, k := range append([][]byte{key}, old...) {
		if len(k) != chacha20poly1305.KeySize {
			return nil, errors.New("delivery: the mail key must be 32 bytes")
		}
	}
	if r == nil {
		r = rand.Reader
	}
	return &Sealer{key: append([]byte(nil), key...), old: old, rand: r}, nil
}

// sealedMessage is what is encrypted: the parts of the Message a worker
// cannot get from the job's clear fields.
type sealedMessage struct {
	To          string `json:"to"`
	ProjectName string `json:"name"`
	Code        string `json:"code"`
	TTL         int64  `json:"ttl"` // nanoseconds
	Link        string `json:"link,omitempty"`
	Lang        string `json:"lang,omitempty"`
}

// Seal implements authd.JobSealer. The output is nonce || ciphertext.
func (s *Sealer) Seal(deliveryID string, m authd.Message) ([]byte, error) {
	plain, err := json.Marshal(sealedMessage{To: m.To, ProjectName: m.ProjectName, Code: m.Code, TTL: int64(m.TTL), Link: m.Link, Lang: m.Lang})
	if err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "seal mail job", Err: err}
	}
	aead, _ := chacha20poly1305.NewX(s.key) // the key's size is checked by NewSealer
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := io.ReadFull(s.rand, out); err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "random source failed", Err: err}
	}
	return aead.Seal(out, out, plain, []byte(deliveryID)), nil
}

// Open implements authd.JobSealer. The job's clear fields (project, code
// id, expiry) are filled in by the caller.
func (s *Sealer) Open(deliveryID string, sealed []byte) (authd.Message, error) {
	if len(sealed) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return authd.Message{}, errUnsealable
	}
	var plain []byte
	for _, k := range append([][]byte{s.key}, s.old...) {
		aead, _ := chacha20poly1305.NewX(k)
		var err error
		if plain, err = aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(deliveryID)); err == nil {
			break
		}
	}
	if plain == nil {
		return authd.Message{}, errUnsealable
	}
	var sm sealedMessage
	if err := json.Unmarshal(plain, &sm); err != nil {
		return authd.Message{}, errUnsealable
	}
	return authd.Message{To: sm.To, ProjectName: sm.ProjectName, Code: sm.Code, TTL: time.Duration(sm.TTL), Link: sm.Link, Lang: sm.Lang}, nil
}

// errUnsealable says nothing of why: a wrong key, a wrong id and a damaged
// job look the same to an attacker.
var errUnsealable = &authd.Error{Code: authd.EINTERNAL, Message: "mail job cannot be opened (wrong key, wrong delivery id, or damaged)"}
