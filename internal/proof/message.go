// Package proof signs and verifies the identity proof of DESIGN.md §1.
//
// The v1 proof is the original (Python) service's: its signature is
// HMAC-SHA256 over the payload serialised by json.dumps(payload,
// sort_keys=True). Consumers recompute exactly those bytes, so Message must
// reproduce Python's encoder byte for byte, escapes included.
package proof

import (
	"strconv"
	"unicode/utf8"

	"github.com/authd/authd"
)

// Message returns the bytes the signature of p covers: the payload
// {auth_user_id, email, issued_at, project_id, verified} as Python's
// json.dumps(payload, sort_keys=True) writes it. p.Signature is ignored.
func Message(p authd.Proof) []byte {
	return AppendMessage(make([]byte, 0, messageLen(p)), p)
}

// messageLen is len(Message(p)), so that Message allocates once.
func messageLen(p authd.Proof) int {
	const fixed = len(`{"auth_user_id": , "email": , "issued_at": , "project_id": , "verified": }`)
	var digits [20]byte
	n := fixed + len(strconv.AppendInt(digits[:0], p.IssuedAt, 10)) +
		pyStringLen(p.AuthUserID) + pyStringLen(p.Email) + pyStringLen(p.ProjectID)
	if p.Verified {
		return n + len("true")
	}
	return n + len("false")
}

// AppendMessage appends Message(p) to dst and returns the extended slice.
func AppendMessage(dst []byte, p authd.Proof) []byte {
	// Keys in sorted order, as sort_keys=True emits them.
	dst = append(dst, `{"auth_user_id": `...)
	dst = appendPyString(dst, p.AuthUserID)
	dst = append(dst, `, "email": `...)
	dst = appendPyString(dst, p.Email)
	dst = append(dst, `, "issued_at": `...)
	dst = strconv.AppendInt(dst, p.IssuedAt, 10)
	dst = append(dst, `, "project_id": `...)
	dst = appendPyString(dst, p.ProjectID)
	if p.Verified {
		dst = append(dst, `, "verified": true}`...)
	} else {
		dst = append(dst, `, "verified": false}`...)
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// pyStringLen is len(appendPyString(nil, s)).
func pyStringLen(s string) int {
	n := len(`""`)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= ' ' && c <= '~' && c != '"' && c != '\\':
			n++
			i++
		case c < utf8.RuneSelf:
			switch c {
			case '"', '\\', '\b', '\f', '\n', '\r', '\t':
				n += 2
			default:
				n += 6
			}
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r > 0xFFFF {
				n += 12
			} else {
				n += 6
			}
			i += size
		}
	}
	return n
}

// appendPyString appends s as a JSON string the way Python's json module does
// with ensure_ascii=True (its default): only ' '..'~' other than '"' and '\'
// are written raw; '"', '\' and \b \f \n \r \t get their short escapes;
// everything else, DEL (0x7f) included, becomes \uXXXX in lowercase hex, and a
// character above U+FFFF becomes its UTF-16 surrogate pair. '<', '>', '&' and
// '/' are not escaped (unlike Go's encoding/json).
//
// A Python str cannot hold invalid UTF-8, so there is nothing to copy for it;
// each byte that is not part of a valid UTF-8 sequence is written as \ufffd,
// as encoding/json does, rather than failing. The input is validated before
// it is signed (addresses, project ids, UUIDs), so this only keeps the
// encoder total; note that it makes "\xff" and "\ufffd" sign alike.
func appendPyString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending raw output
	for i := 0; i < len(s); {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				dst = append(dst, '\\', '"')
			case '\\':
				dst = append(dst, '\\', '\\')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default: // other control characters and DEL
				dst = appendU4(dst, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		// An invalid byte decodes as (RuneError, 1): written as \ufffd.
		if r > 0xFFFF {
			r -= 0x10000
			dst = appendU4(dst, 0xD800+(r>>10))
			dst = appendU4(dst, 0xDC00+(r&0x3FF))
		} else {
			dst = appendU4(dst, r)
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendU4 appends \uXXXX for r <= 0xFFFF, lowercase as Python writes it.
func appendU4(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u',
		hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}
