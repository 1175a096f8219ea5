package main

// Failover under load (issue 11): two authd instances on one Redis Cluster
// or Sentinel setup, steady send-code and verify-code across both, and one
// master SIGKILLed. What must hold, and is asserted here:
//
//   - while Redis fails over, every request that fails is a 503, each
//     answered within a second (none reaches the client's timeout, none is
//     a 500);
//   - once Redis reports the new master, every request succeeds again
//     within 2 s, with the same instances (no restart);
//   - what asynchronous replication lost (codes and queued mails
//     acknowledged just before the kill, on the killed master's slots) is
//     counted and reported; anything else lost fails the test.
//
// The figures (the 503 window of each slot range, what was lost, the
// recovery time) are logged: go test -v -run Failover ./cmd/authd.

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

const (
	// quick is how long a failing request may take: a 503 that comes
	// later than this is a pile-up, not an answer.
	quick = time.Second
	// recovery is how long after Redis reports the new master every
	// request must succeed again.
	recovery = 2 * time.Second
	// settled is how long the load runs after recovery, all of it
	// required to succeed.
	settled = 2 * time.Second
	// replicationLag bounds how long before the kill a write may have been
	// acknowledged and still be lost: asynchronous replication on loopback
	// is far faster, even on a loaded machine.
	replicationLag = 2 * time.Second
	// loadTimeout is the load client's timeout.
	loadTimeout = 5 * time.Second
)

// failoverEnv is the environment of the instances of a failover test:
// production on PostgreSQL, redisURL and SMTP, with the limits raised out
// of the load's way but on (so that a send-code still touches the client
// IP's, the global cap's and the address's slots) and mail retried fast.
func failoverEnv(t *testing.T, redisURL string, smtp *smtptest.Server, masterKey string) map[string]string {
	t.Helper()
	return map[string]string{
		"DATABASE_URL":             scratchDatabase(t),
		"REDIS_URL":                redisURL,
		"REDIS_KEY_PREFIX":         "fo:",
		"SMTP_HOST":                smtp.Host(),
		"SMTP_PORT":                strconv.Itoa(smtp.Port()),
		"SMTP_TLS":                 "false",
		"SECRET_KEY":               testSecret,
		"AUTHD_MASTER_KEY":         masterKey,
		"AUTHD_ISSUER":             testIssuer,
		"EMAILS_FROM_EMAIL":        "noreply@authd.test",
		"LIMIT_SEND_CODE_PER_IP":   "100000/s",
		"LIMIT_VERIFY_CODE_PER_IP": "100000/s",
		"LIMIT_MAILS_TOTAL":        "100000/s",
		"MAIL_CLAIM_TIMEOUT":       "2s",
		"MAIL_RETRY_BACKOFF":       "250ms",
		"MAIL_RETRY_MAX":           "1s",
		"LOG_LEVEL":                "warn",
	}
}

// partitionOf returns the code store's partition of each address under
// masterKey (hex), as authd computes it: which slot its state is in.
func partitionOf(t *testing.T, masterKey string) func(email string) int {
	t.Helper()
	raw, err := hex.DecodeString(masterKey)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := authd.DeriveKeys(raw)
	if err != nil {
		t.Fatal(err)
	}
	return func(email string) int {
		norm, err := authd.NormalizeEmail(email)
		if err != nil {
			panic(err)
		}
		return keys.AddressOf(norm).Partition()
	}
}

// loadRequest is one request of the load and its answer.
type loadRequest struct {
	op         string // "send" or "verify"
	email      string
	inst       int
	start, end time.Time
	status     int    // 0: no answer (transport error, client timeout)
	err        string // the transport error
	late       bool   // a verify retried after the load, not part of it
}

func (r loadRequest) failed() bool { return r.status == 0 || r.status >= 500 }

// addrState is what became of one address's code.
type addrState struct {
	inst     int       // the instance that sent it
	sentAt   time.Time // when send-code answered 200 (zero: it did not)
	code     string
	mails    int
	verified []time.Time   // each 200 of verify-code
	refused  bool          // a verify-code of the mailed code answered 401
	failures []loadRequest // verify-codes that failed (503): retried after the load
}

// failoverLoad drives steady send-code + verify-code load across
// instances: senders ask for codes for fresh addresses, alternating
// instances; the codes are read from the mail as it arrives and verified
// on the other instance.
type failoverLoad struct {
	t     *testing.T
	insts []*instance
	smtp  *smtptest.Server
	httpc *http.Client

	mu    sync.Mutex
	reqs  []loadRequest
	addrs map[string]*addrState

	codes    chan string // addresses whose first mail arrived
	stop     chan struct{}
	stopMail chan struct{}
	wg       sync.WaitGroup
	mailDone chan struct{}
}

func newFailoverLoad(t *testing.T, smtp *smtptest.Server, insts ...*instance) *failoverLoad {
	httpc := &http.Client{Timeout: loadTimeout, Transport: validating(&http.Transport{MaxIdleConnsPerHost: 64})}
	// Before the instances stop (cleanups run last first): idle
	// connections would hold their Shutdown.
	t.Cleanup(httpc.CloseIdleConnections)
	return &failoverLoad{
		t: t, insts: insts, smtp: smtp, httpc: httpc,
		addrs: map[string]*addrState{}, codes: make(chan string, 100000),
		stop: make(chan struct{}), stopMail: make(chan struct{}), mailDone: make(chan struct{}),
	}
}

// run starts senders and verifiers, each pausing pace between requests.
func (l *failoverLoad) run(senders, verifiers int, pace time.Duration) {
	go l.watchMail()
	for i := range senders {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.send((i + n) % len(l.insts))
				time.Sleep(pace)
			}
		}()
	}
	for range verifiers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case email := <-l.codes:
					l.verify(email, false)
					time.Sleep(pace)
				}
			}
		}()
	}
}

// halt stops the load and waits for its requests to end.
func (l *failoverLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *failoverLoad) send(inst int) {
	email := uniqueEmail("fo")
	r := l.do("send", email, inst, "/api/v2/auth/send-code", map[string]string{"email": email, "project_id": "shop"}, false)
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.addrs[email]
	if a == nil {
		a = &addrState{}
		l.addrs[email] = a
	}
	a.inst = inst
	if r.status == 200 {
		a.sentAt = r.end
	}
}

// verify verifies the code mailed to email on the instance that did not
// send it. late marks the retries after the load.
func (l *failoverLoad) verify(email string, late bool) loadRequest {
	l.mu.Lock()
	a := l.addrs[email]
	inst, code := (a.inst+1)%len(l.insts), a.code
	l.mu.Unlock()
	r := l.do("verify", email, inst, "/api/v2/auth/verify-code", map[string]string{"email": email, "project_id": "shop", "code": code}, late)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case r.status == 200:
		a.verified = append(a.verified, r.end)
	case r.status == 401:
		a.refused = true
	case r.failed():
		a.failures = append(a.failures, r)
	}
	return r
}

// do makes one request and records it.
func (l *failoverLoad) do(op, email string, inst int, path string, body any, late bool) loadRequest {
	b, _ := json.Marshal(body)
	r := loadRequest{op: op, email: email, inst: inst, start: time.Now(), late: late}
	req, _ := http.NewRequest(http.MethodPost, l.insts[inst].URL+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.httpc.Do(req)
	if err != nil {
		r.err = err.Error()
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
	}
	r.end = time.Now()
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
	return r
}

// watchMail reads every mail as it arrives: the first for an address
// goes to the verifiers, later ones are duplicates.
func (l *failoverLoad) watchMail() {
	defer close(l.mailDone)
	seen := 0
	for {
		msgs := l.smtp.Messages()
		for _, m := range msgs[seen:] {
			code := smtptest.CodeFrom(m)
			for _, to := range m.To {
				to = strings.ToLower(to)
				l.mu.Lock()
				a := l.addrs[to]
				if a == nil { // the mail came before send-code's answer
					a = &addrState{inst: -1}
					l.addrs[to] = a
				}
				a.mails++
				first := a.mails == 1
				if first {
					a.code = code
				}
				l.mu.Unlock()
				if first {
					l.codes <- to
				}
			}
		}
		seen = len(msgs)
		select {
		case <-l.stopMail:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// drain waits until every code acknowledged has been mailed, or until
// within has passed (what has not come by then is lost), then verifies
// the codes not yet verified and retries those that met a 503: Redis
// has recovered, so none of these may fail.
func (l *failoverLoad) drain(within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		missing := 0
		for _, a := range l.addrs {
			if !a.sentAt.IsZero() && a.mails == 0 {
				missing++
			}
		}
		l.mu.Unlock()
		if missing == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(l.stopMail)
	<-l.mailDone
	late := func(email string) {
		if r := l.verify(email, true); r.failed() {
			l.t.Errorf("verify-code after the failover: %d %s", r.status, r.err)
		}
	}
	for len(l.codes) > 0 {
		late(<-l.codes)
	}
	l.mu.Lock()
	var again []string
	for email, a := range l.addrs {
		if len(a.failures) > 0 && len(a.verified) == 0 && !a.refused && a.code != "" {
			again = append(again, email)
		}
	}
	l.mu.Unlock()
	for _, email := range again {
		late(email)
	}
}

// replays verifies once more every code verified on the killed master
// just before the kill: a 200 is a code whose use the new master never
// received.
func (l *failoverLoad) replays(tm failoverTimes, onVictim func(string) bool) (tried, replayed int) {
	l.mu.Lock()
	var emails []string
	for email, a := range l.addrs {
		if len(a.verified) == 1 && onVictim(email) && tm.acked(a.verified[0]) {
			emails = append(emails, email)
		}
	}
	l.mu.Unlock()
	for _, email := range emails {
		switch r := l.verify(email, true); {
		case r.status == 200:
			replayed++
		case r.failed():
			l.t.Errorf("verify-code after the failover: %d %s", r.status, r.err)
		}
	}
	return len(emails), replayed
}

// requests returns a copy of the requests made so far.
func (l *failoverLoad) requests() []loadRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]loadRequest(nil), l.reqs...)
}

// failoverTimes are the moments of one failover.
type failoverTimes struct {
	kill   time.Time // SIGKILL was sent to the master
	killed time.Time // its process was gone
	ok     time.Time // Redis reported the new master
}

// acked reports whether a write answered at "at" may have been
// acknowledged by the killed master and lost with it: answered at most
// replicationLag before the kill, or while the master was dying or its
// last answers were still on their way to the client.
func (tm failoverTimes) acked(at time.Time) bool {
	return !at.Before(tm.kill.Add(-replicationLag)) && !at.After(tm.killed.Add(quick))
}

// windowFigures is how one slot range fared during a failover.
type windowFigures struct {
	requests, failed int           // during the failover; all failures
	first, last      time.Duration // the failures' span, from the kill
	recovered        time.Duration // the last failure's end, from ok
	slowest          time.Duration // the slowest failing request
}

// checkFailover asserts the answers of a failover and returns each slot
// range's figures; rangeOf names the range of an address.
func checkFailover(t *testing.T, reqs []loadRequest, tm failoverTimes, rangeOf func(email string) string) map[string]*windowFigures {
	t.Helper()
	figs := map[string]*windowFigures{}
	recoveredBy := tm.ok.Add(recovery)
	beforeKill, afterRecovery := 0, 0
	counts := map[string]int{}
	var first, last time.Time
	for _, r := range reqs {
		if r.late {
			continue
		}
		if first.IsZero() || r.start.Before(first) {
			first = r.start
		}
		if r.end.After(last) {
			last = r.end
		}
		f := figs[rangeOf(r.email)]
		if f == nil {
			f = &windowFigures{}
			figs[rangeOf(r.email)] = f
		}
		if r.end.Before(tm.kill) {
			beforeKill++
		}
		if !r.start.Before(recoveredBy) {
			afterRecovery++
		}
		if r.end.After(tm.kill) && r.start.Before(recoveredBy) {
			f.requests++ // during the failover
		}
		counts[r.op]++
		if r.status == 200 || r.status == 401 && r.op == "verify" { // 401: a lost code, counted by countLoss
			continue
		}
		if !r.failed() {
			t.Errorf("%s: status %d, want 200 or 503", r.op, r.status)
			continue
		}
		d := r.end.Sub(r.start)
		switch {
		case r.end.Before(tm.kill):
			t.Errorf("%s failed before the kill: %d %s", r.op, r.status, r.err)
		case r.status != http.StatusServiceUnavailable:
			t.Errorf("%s during the failover: status %d %s, want a quick 503", r.op, r.status, r.err)
		case d > quick:
			t.Errorf("%s during the failover: a 503 after %v, want within %v", r.op, d.Round(time.Millisecond), quick)
		}
		if !r.start.Before(recoveredBy) {
			t.Errorf("%s started %v after Redis reported the new master failed: %d %s",
				r.op, r.start.Sub(tm.ok).Round(time.Millisecond), r.status, r.err)
		}
		if f.failed == 0 {
			f.first, f.last, f.recovered = r.start.Sub(tm.kill), r.end.Sub(tm.kill), r.end.Sub(tm.ok)
		}
		f.first = min(f.first, r.start.Sub(tm.kill))
		f.last = max(f.last, r.end.Sub(tm.kill))
		f.recovered = max(f.recovered, r.end.Sub(tm.ok))
		f.slowest = max(f.slowest, d)
		f.failed++
	}
	t.Logf("load: %d send-code and %d verify-code in %.1fs, across both instances",
		counts["send"], counts["verify"], last.Sub(first).Seconds())
	if beforeKill < 20 || afterRecovery < 50 {
		t.Errorf("%d requests before the kill, %d after the recovery bound: the load did not test it", beforeKill, afterRecovery)
	}
	return figs
}

// logWindows logs each range's figures.
func logWindows(t *testing.T, name string, figs map[string]*windowFigures) {
	t.Helper()
	var ranges []string
	for r := range figs {
		ranges = append(ranges, r)
	}
	sort.Strings(ranges)
	for _, r := range ranges {
		f := figs[r]
		if f.failed == 0 {
			t.Logf("%s: slots %s: no failure (%d requests during the failover)", name, r, f.requests)
			continue
		}
		t.Logf("%s: slots %s: %d of %d requests 503 from %+.2fs to %+.2fs after the kill (slowest %v); the last ended %+.2fs from Redis reporting the new master",
			name, r, f.failed, f.requests, f.first.Seconds(), f.last.Seconds(), f.slowest.Round(time.Millisecond), f.recovered.Seconds())
	}
}

// lossFigures is what the failover lost.
type lossFigures struct {
	acked    int // send-code 200s
	nearKill int // of which on the killed master's slots, answered as failoverTimes.acked says
	// Asynchronous replication: acknowledged by the killed master, never
	// on its replica. Each is when it was acknowledged, from the kill.
	mailLost []time.Duration // codes never mailed (the job was lost with the code)
	codeLost []time.Duration // codes mailed before the kill that no longer verify
	// A verify-code in flight at the kill whose code is refused after: it
	// may have consumed it, its answer lost with the master.
	unknown      int
	duplicates   int // mailed more than once
	unfinished   int // sends whose end could not be recorded: sent again after MAIL_CLAIM_TIMEOUT
	phantom      int // mailed though send-code answered 503
	replaysTried int // codes verified on the killed master's slots just before the kill
	replays      int // of which verified again on the new master
	unexplained  []string
}

// countLoss counts what was lost and checks that nothing was lost but
// writes acknowledged on the victim's slots just before the kill, or in
// flight at it.
func countLoss(l *failoverLoad, tm failoverTimes, onVictim func(string) bool) lossFigures {
	l.mu.Lock()
	defer l.mu.Unlock()
	var f lossFigures
	for _, inst := range l.insts {
		f.unfinished += strings.Count(inst.Logs.String(), "finishing a job failed")
	}
	window := tm.acked
	inFlight := func(a *addrState) bool {
		for _, r := range a.failures {
			if r.start.Before(tm.killed) {
				return true
			}
		}
		return false
	}
	for email, a := range l.addrs {
		if !a.sentAt.IsZero() {
			f.acked++
			if onVictim(email) && window(a.sentAt) {
				f.nearKill++
			}
		}
		if a.mails > 1 {
			f.duplicates++
		}
		explained := onVictim(email) && window(a.sentAt)
		at := a.sentAt.Sub(tm.kill)
		switch {
		case a.sentAt.IsZero() && a.mails > 0:
			f.phantom++
		case !a.sentAt.IsZero() && a.mails == 0:
			f.mailLost = append(f.mailLost, at)
			if !explained {
				f.unexplained = append(f.unexplained, fmt.Sprintf("no mail for a code acknowledged %+.2fs from the kill", at.Seconds()))
			}
		case a.mails > 0 && len(a.verified) == 0 && onVictim(email) && inFlight(a):
			f.unknown++
		case a.mails > 0 && len(a.verified) == 0:
			f.codeLost = append(f.codeLost, at)
			if !explained {
				f.unexplained = append(f.unexplained, fmt.Sprintf("a mailed code acknowledged %+.2fs from the kill does not verify (refused: %v)", at.Seconds(), a.refused))
			}
		}
	}
	return f
}

func (f lossFigures) log(t *testing.T, name string) {
	t.Helper()
	span := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "0"
		}
		lo, hi := ds[0], ds[0]
		for _, d := range ds {
			lo, hi = min(lo, d), max(hi, d)
		}
		return fmt.Sprintf("%d (acknowledged %+.2fs to %+.2fs from the kill)", len(ds), lo.Seconds(), hi.Seconds())
	}
	t.Logf("%s: lost of %d codes acknowledged (%d on the killed master's slots from %v before the kill until it died): never mailed %s; mailed but no longer verifying %s; in flight at the kill, refused after %d",
		name, f.acked, f.nearKill, replicationLag, span(f.mailLost), span(f.codeLost), f.unknown)
	t.Logf("%s: mailed twice %d (the instances logged %d sends whose end could not be recorded); mailed though answered 503 %d; verified again on the new master %d of %d verified on the killed master's slots from %v before the kill until it died",
		name, f.duplicates, f.unfinished, f.phantom, f.replays, f.replaysTried, replicationLag)
}

// crc16 is Redis Cluster's key hash (CRC16-XMODEM), so that the test
// knows which slot each of authd's hash tags is in.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func slotOf(tag string) int { return int(crc16(tag) % 16384) }

// TestClusterFailover kills a master of a Redis Cluster with the default
// cluster-require-full-coverage yes: between the failure and the
// promotion every slot answers CLUSTERDOWN.
func TestClusterFailover(t *testing.T) { clusterFailover(t, "yes") }

// TestClusterFailoverPartialCoverage is the same with
// cluster-require-full-coverage no, the README's recommendation: only the
// killed master's slots fail.
func TestClusterFailoverPartialCoverage(t *testing.T) { clusterFailover(t, "no") }

func clusterFailover(t *testing.T, fullCoverage string) {
	c := testenv.StartCluster(t)
	if err := c.Configure("cluster-require-full-coverage", fullCoverage); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitSynced(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	var any *testenv.Node
	for m := range masters {
		any = m
	}
	// The test's slot arithmetic is Redis's.
	if out, err := testenv.Cli(any, "cluster", "keyslot", "fo:{a:7}:mail"); err != nil || strings.TrimSpace(out) != strconv.Itoa(slotOf("a:7")) {
		t.Fatalf("cluster keyslot: %q %v, want %d", out, err, slotOf("a:7"))
	}
	ownerOf := func(slot int) *testenv.Node {
		for m, ranges := range masters {
			for _, r := range ranges {
				lo, hi, found := strings.Cut(r, "-")
				a, _ := strconv.Atoi(lo)
				b := a
				if found {
					b, _ = strconv.Atoi(hi)
				}
				if a <= slot && slot <= b {
					return m
				}
			}
		}
		t.Fatalf("no master serves slot %d", slot)
		return nil
	}
	// The victim serves neither the client IP's limit nor the global cap
	// (one slot each: when their master is down, every request of the IP,
	// every send-code, waits for the promotion whatever the coverage), so
	// that what the setting changes shows.
	shared := map[*testenv.Node]bool{ownerOf(slotOf("g")): true, ownerOf(slotOf("ip:127.0.0.1")): true}
	var victim *testenv.Node
	for m := range masters {
		if !shared[m] {
			victim = m
		}
	}

	smtp := smtptest.Start(t)
	masterKey := randHex(32)
	env := failoverEnv(t, c.URL(), smtp, masterKey)
	env["REDIS_CLUSTER"] = "true"
	a, b := start(t, env), start(t, env)
	part := partitionOf(t, masterKey)
	ownerOfAddr := func(email string) *testenv.Node { return ownerOf(slotOf("a:" + strconv.Itoa(part(email)))) }
	rangeOf := func(email string) string {
		n := ownerOfAddr(email)
		s := strings.Join(masters[n], ",")
		if n == victim {
			s += " (killed)"
		}
		return s
	}
	onVictim := func(email string) bool { return ownerOfAddr(email) == victim }

	load := newFailoverLoad(t, smtp, a, b)
	load.run(2, 2, 10*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	var tm failoverTimes
	tm.kill = time.Now()
	c.Kill(victim)
	tm.killed = time.Now()
	if err := c.WaitOK(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	tm.ok = time.Now()
	time.Sleep(time.Until(tm.ok.Add(recovery + settled)))
	load.halt()
	load.drain(4 * time.Second)
	tried, replayed := load.replays(tm, onVictim)

	name := "cluster-require-full-coverage " + fullCoverage
	t.Logf("%s: replica promoted (cluster_state:ok) %.2fs after the kill", name, tm.ok.Sub(tm.kill).Seconds())
	figs := checkFailover(t, load.requests(), tm, rangeOf)
	logWindows(t, name, figs)
	loss := countLoss(load, tm, onVictim)
	loss.replaysTried, loss.replays = tried, replayed
	loss.log(t, name)
	for _, u := range loss.unexplained {
		t.Error(u)
	}
	if fullCoverage == "no" {
		for r, f := range figs {
			if !strings.HasSuffix(r, "(killed)") && f.failed > 0 {
				t.Errorf("slots %s, on a master that stayed up, failed %d times", r, f.failed)
			}
		}
	}
	checkReady(t, load, a, b)
}

// TestSentinelFailover kills the master of a Sentinel setup (one master,
// two replicas, three Sentinels) under the same load, with the same
// assertions; every key is on the one master.
func TestSentinelFailover(t *testing.T) {
	s := testenv.StartSentinel(t)
	old, err := s.Master()
	if err != nil {
		t.Fatal(err)
	}
	smtp := smtptest.Start(t)
	masterKey := randHex(32)
	env := failoverEnv(t, s.URL(), smtp, masterKey)
	a, b := start(t, env), start(t, env)
	rangeOf := func(string) string { return "0-16383 (killed)" }
	onVictim := func(string) bool { return true }

	load := newFailoverLoad(t, smtp, a, b)
	load.run(2, 2, 10*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)
	var tm failoverTimes
	tm.kill = time.Now()
	s.Kill(old)
	tm.killed = time.Now()
	if _, err := s.WaitFailover(old, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	tm.ok = time.Now()
	time.Sleep(time.Until(tm.ok.Add(recovery + settled)))
	load.halt()
	load.drain(4 * time.Second)
	tried, replayed := load.replays(tm, onVictim)

	name := "sentinel"
	t.Logf("%s: the sentinels named the new master %.2fs after the kill", name, tm.ok.Sub(tm.kill).Seconds())
	figs := checkFailover(t, load.requests(), tm, rangeOf)
	logWindows(t, name, figs)
	loss := countLoss(load, tm, onVictim)
	loss.replaysTried, loss.replays = tried, replayed
	loss.log(t, name)
	for _, u := range loss.unexplained {
		t.Error(u)
	}
	checkReady(t, load, a, b)
}

// checkReady asserts that each instance is ready again.
func checkReady(t *testing.T, load *failoverLoad, insts ...*instance) {
	t.Helper()
	for _, inst := range insts {
		resp, err := load.httpc.Get(inst.URL + "/api/v1/health/ready")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("readiness after the failover: %d %s", resp.StatusCode, body)
		}
	}
}
