package authd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"strconv"
	"time"
)

// CodeLength is the number of digits of a code.
const CodeLength = 6

// Why a code was refused. The answer is one 401 for all of them (DESIGN.md
// §2, no oracle for the caller); only metrics tell them apart.
const (
	CodeWrong   = "wrong"   // a live code, another value
	CodeExpired = "expired" // no live code: expired, used, replaced or never sent
	CodeBurnt   = "burnt"   // the code died of too many wrong tries
)

// CodeRecord is a code at rest: never the code itself, only its keyed hash.
type CodeRecord struct {
	// ID is random per code; it names the code's mail job, so that a mail
	// whose code has been replaced is not sent.
	ID string
	// Hash is CodeHash(key, project, address, code).
	Hash      []byte
	ExpiresAt time.Time
	// Attempts is the number of wrong tries made against this code.
	Attempts int
}

// LimitState describes the client-IP limit after a request, for the
// RateLimit-* response headers.
type LimitState struct {
	Limit     int
	Remaining int
	Reset     time.Duration // until the bucket is full again
}

// Address names an address in the code store without revealing it: both
// fields are keyed hashes (AddressKey). Key is the normalised address's: it
// owns the codes and resend cooldowns. Mailbox is its Mailbox's, the inbox
// it delivers to: it owns the budgets (codes and failures per address),
// which an inbox's aliases share, and names the partition everything of
// the address lives in.
type Address struct {
	Key     string
	Mailbox string
}

// AddressOf returns the code store's names for a normalised address.
func (k Keys) AddressOf(email string) Address {
	return Address{Key: AddressKey(k.Address, email), Mailbox: AddressKey(k.Address, Mailbox(email))}
}

// Partition is the address's partition (Partition of its mailbox).
func (a Address) Partition() int { return Partition(a.Mailbox) }

// IssueRequest asks the code store to store a new code for (Project, Address).
type IssueRequest struct {
	Address  Address
	Project  string
	ClientIP string
	Record   CodeRecord
	Now      time.Time
	// MailsProject is the project whose MailsPerProject counts the mail:
	// "" is Project (a hosted sign-in's code has a Project of its own,
	// SignInProject, and its mails count as its client's).
	MailsProject string

	ResendCooldown  time.Duration // per (project, address)
	CodesPerAddress Rate          // per mailbox, all projects together
	MailsTotal      Rate          // every mail authd sends
	SendPerIP       Rate
	MailsPerProject Rate

	// Job, when set, is the code's mail: queued in the same atomic step as
	// the code, so that a stored code always has its mail on the way.
	Job *MailJob
}

// MailsOf is the project whose mails budget r counts against.
func (r IssueRequest) MailsOf() string {
	if r.MailsProject != "" {
		return r.MailsProject
	}
	return r.Project
}

// IssueResult is what a successful IssueCode reports.
type IssueResult struct {
	// Replaced reports that a live code was replaced by this one.
	Replaced bool
	IP       LimitState
	// Mails is the limit of mails in total after this one (the sender's
	// reputation budget, shared by every instance).
	Mails LimitState
}

// ConsumeRequest asks the code store to check a code and, if it matches,
// consume it.
type ConsumeRequest struct {
	Address  Address
	Project  string
	ClientIP string
	Hash     []byte
	Now      time.Time

	AttemptsPerCode    int  // wrong tries after which the code is dead; <= 0: no limit
	FailuresPerAddress Rate // wrong tries per mailbox, all projects, across codes
	VerifyPerIP        Rate
}

// ConsumeResult is what ConsumeCode reports. IP is also set beside an ECODE
// or a failures_per_address refusal.
type ConsumeResult struct {
	// Record is the consumed code, for RestoreCode.
	Record CodeRecord
	IP     LimitState
}

// CodeStore holds codes, the limits around them, and the mail queue the
// codes' mails wait in: IssueCode queues a code's mail in the same atomic
// step as the code. Implementations: internal/redis, internal/inmem.
type CodeStore interface {
	MailQueue

	// IssueCode checks, in this order, the client-IP limit, the limit of
	// mails in total, the per-project mail limit, the resend cooldown of
	// (Project, Address.Key) and the codes per address (Address.Mailbox);
	// if all pass it stores Record, replacing any live code of (Project,
	// Address.Key), queues Job (if set) with its delivery status "queued",
	// and counts the request against each limit — all atomically. A
	// refused request changes nothing and counts nowhere.
	//
	// Errors: ERATELIMITED (with RetryAfter and Limit one of "send_per_ip",
	// "mails_total", "mails_per_project", "cooldown", "codes_per_address"),
	// EUNAVAILABLE.
	IssueCode(ctx context.Context, req IssueRequest) (IssueResult, error)

	// ConsumeCode checks the client-IP verify limit and the failure budget
	// of Address.Mailbox, then compares Hash with the live code of
	// (Project, Address.Key). On a match the code is deleted and returned.
	// On a mismatch the code's attempts and the mailbox's failures are
	// counted; the code
	// dies at AttemptsPerCode. A missing or expired code counts nowhere but
	// the IP limit. Atomic: of many concurrent tries of the right code,
	// exactly one succeeds.
	//
	// Errors: ECODE (ErrInvalidCode) for every failed comparison, missing,
	// expired or dead code; ERATELIMITED (Limit "verify_per_ip" or
	// "failures_per_address"); EUNAVAILABLE.
	ConsumeCode(ctx context.Context, req ConsumeRequest) (ConsumeResult, error)

	// RestoreCode puts back a code consumed by ConsumeCode whose
	// verification could not be completed, unless a newer code has been
	// issued since or the code has expired (then it does nothing).
	//
	// Errors: EUNAVAILABLE.
	RestoreCode(ctx context.Context, a Address, project string, rec CodeRecord, now time.Time) error

	// IsCurrent reports whether the code named id is still the live code of
	// (project, a.Key): a mail for a replaced, used or expired code is not
	// sent.
	//
	// Errors: EUNAVAILABLE.
	IsCurrent(ctx context.Context, a Address, project, id string, now time.Time) (bool, error)

	// Unlock clears the failure and codes-per-address budgets of the
	// mailbox (a Mailbox key): every alias of the inbox is unlocked.
	//
	// Errors: EUNAVAILABLE.
	Unlock(ctx context.Context, mailbox string) error

	// EraseAddress deletes everything kept about an address: its live
	// codes and resend cooldowns in every project, its mailbox's send and
	// failure budgets, and its mail jobs still queued with their delivery
	// statuses (a mail queued before the erasure is not sent after it). It
	// reports how many codes, cooldowns and budgets it deleted; jobs are
	// not counted.
	//
	// Errors: EUNAVAILABLE.
	EraseAddress(ctx context.Context, a Address) (int, error)
}

// NewCode returns n uniform decimal digits read from r (crypto/rand in
// production). Rejection sampling: no modulo bias.
func NewCode(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 250 { // 250 = 25 * 10: keeps every digit equally likely
				out = append(out, '0'+b%10)
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

// ValidCode reports whether code is exactly n decimal digits.
func ValidCode(code string, n int) bool {
	if len(code) != n {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

// CodeHash binds a code to its project and address: a hash taken for one
// (project, address) never matches another's.
func CodeHash(key []byte, project, address, code string) []byte {
	// Length-prefixed fields ("%d:%s" each): no two (project, address,
	// code) triples share an input.
	buf := make([]byte, 0, 128)
	for _, f := range []string{project, address, code} {
		buf = append(strconv.AppendInt(buf, int64(len(f)), 10), ':')
		buf = append(buf, f...)
	}
	out := make([]byte, 0, sha256.Size)
	withMAC(key, func(m hash.Hash) {
		m.Write(buf)
		out = m.Sum(out)
	})
	return out
}

// NewID returns 128 random bits from r, hex-encoded: a code's id.
func NewID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
