package authd

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
)

// macs keeps HMAC-SHA256 states of the few keys a process uses (the
// address and code keys of the current and previous master keys), for
// reuse: a state reset for its next message skips rehashing the key's
// pads, and allocates nothing. AddressKey and CodeHash run several times
// per request. Bounded: past maxMACKeys, a key gets a fresh state each
// time.
var macs struct {
	sync.RWMutex
	pools map[string]*sync.Pool
}

const maxMACKeys = 64

// withMAC runs f with an HMAC-SHA256 state of key, reset.
func withMAC(key []byte, f func(hash.Hash)) {
	macs.RLock()
	p := macs.pools[string(key)]
	macs.RUnlock()
	if p == nil {
		macs.Lock()
		if macs.pools == nil {
			macs.pools = make(map[string]*sync.Pool)
		}
		if p = macs.pools[string(key)]; p == nil && len(macs.pools) < maxMACKeys {
			k := strings.Clone(string(key))
			p = &sync.Pool{New: func() any { return hmac.New(sha256.New, []byte(k)) }}
			macs.pools[k] = p
		}
		macs.Unlock()
	}
	if p == nil {
		f(hmac.New(sha256.New, key))
		return
	}
	m := p.Get().(hash.Hash)
	m.Reset()
	f(m)
	p.Put(m)
}
