package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/smtptest"
	"github.com/authd/authd/internal/testenv"
)

// Many instances on one real Redis Cluster (issue 11): the package's
// cluster, 3 masters and 3 replicas on loopback, started once for the
// test binary (TestMain stops it); each test keeps to a key prefix of its
// own.
var sharedCluster testenv.SharedCluster

// clusterProduction is a production environment on the package's Redis
// Cluster (REDIS_URL naming every node, REDIS_CLUSTER=true), with one
// PostgreSQL database and one SMTP server for all the instances a test
// starts on it.
func clusterProduction(t *testing.T, opts ...smtptest.Option) production {
	t.Helper()
	p := newProduction(t, opts...)
	p.Env["REDIS_URL"] = sharedCluster.Get(t).URL()
	p.Env["REDIS_CLUSTER"] = "true"
	p.Env["REDIS_KEY_PREFIX"] = "e2e-" + randHex(4) + ":"
	return p
}

// sendFrom is a send-code to inst from the client IP ip (X-Forwarded-For:
// the instances trust 127.0.0.1), safe to call from any goroutine.
func sendFrom(inst *instance, ip, email, project string) (response, error) {
	b, _ := json.Marshal(map[string]string{"email": email, "project_id": project})
	req, err := http.NewRequest(http.MethodPost, inst.URL+"/api/v2/auth/send-code", bytes.NewReader(b))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", ip)
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}, err
}

// split sends n send-codes, request i to insts[i%len(insts)] as req(i)
// says, one after the other or all at once, and counts the answers by
// status; every 429 must name a Retry-After.
func split(t *testing.T, insts []*instance, n int, atOnce bool, req func(i int) (ip, email, project string)) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		send := func() {
			ip, email, project := req(i)
			r, err := sendFrom(insts[i%len(insts)], ip, email, project)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("send-code %d: %v", i, err)
			case r.Status == 429 && r.Header.Get("Retry-After") == "":
				t.Errorf("send-code %d: 429 without Retry-After", i)
			case r.Status != 200 && r.Status != 429:
				t.Errorf("send-code %d: %d %s", i, r.Status, r.Body)
			}
			got[r.Status]++
		}
		if atOnce {
			wg.Go(send)
		} else {
			send()
		}
	}
	wg.Wait()
	return got
}

// The limits are GCRA buckets on the callers' clocks (each request's time
// is taken before it reaches Redis): requests at once reach Redis a little
// out of order, which the buckets tolerate up to 250 ms (lib.lua's skew).
// So exactly N pass whether the requests come one after the other or all
// at once, split between the instances.

// perRecipient counts msgs by recipient.
func perRecipient(msgs ...[]smtptest.Message) map[string]int {
	n := map[string]int{}
	for _, ms := range msgs {
		for _, m := range ms {
			for _, to := range m.To {
				n[strings.ToLower(to)]++
			}
		}
	}
	return n
}

// TestClusterTwoInstances: two authd instances on one Redis Cluster and one
// PostgreSQL. A code sent through one verifies through the other, once;
// the per-IP and per-address limits hold across both, N requests split
// between them limited as N to one (see split); every mail queued while both
// run is delivered exactly once, by one of them, each instance holding
// more jobs than it has workers (claims renewed while they wait).
func TestClusterTwoInstances(t *testing.T) {
	t.Parallel()
	p := clusterProduction(t, smtptest.WithDelay(200*time.Millisecond))
	other := smtptest.Start(t, smtptest.WithDelay(200*time.Millisecond))
	p.Env["TRUSTED_PROXIES"] = "127.0.0.1/32"
	p.Env["LIMIT_SEND_CODE_PER_IP"] = "10/h" // no refill during the test
	p.Env["MAIL_CLAIM_TIMEOUT"] = "2s"       // renewed every 667 ms; a send takes 200
	p.Env["MAIL_WORKERS"] = "2"
	envB := cloneEnv(p.Env)
	envB["SMTP_PORT"] = strconv.Itoa(other.Port()) // which instance sent a mail, by where it arrived
	a, b := start(t, p.Env), start(t, envB)
	insts := []*instance{a, b}
	sent := 0 // mails accepted, each to its own address

	t.Run("send on one, verify on the other", func(t *testing.T) {
		for i := range 4 {
			from, to := insts[i%2], insts[(i+1)%2]
			email := uniqueEmail("cross")
			r, err := sendFrom(from, fmt.Sprintf("203.0.113.%d", i+1), email, "shop")
			if err != nil || r.Status != 200 {
				t.Fatalf("send-code: %v %d %s", err, r.Status, r.Body)
			}
			sent++
			id, _ := r.json(t)["delivery_id"].(string)
			to.waitStatus(t, id, "sent", 10*time.Second)
			code := mailCodeOf(t, email, p.SMTP, other)
			if r := to.verify(t, "v1", email, "shop", code); r.Status != 200 {
				t.Fatalf("verify on the other instance: %d %s", r.Status, r.Body)
			}
			if r := from.verify(t, "v1", email, "shop", code); r.Status != 401 {
				t.Fatalf("the same code again, on the first instance: %d %s, want 401", r.Status, r.Body)
			}
		}
	})

	t.Run("per-IP limit across instances", func(t *testing.T) {
		// 16 from one IP, every other one to each instance: 10 pass, as to one.
		got := split(t, insts, 16, false, func(i int) (string, string, string) {
			return "198.51.100.77", uniqueEmail("ip"), "shop"
		})
		if got[200] != 10 || got[429] != 6 {
			t.Fatalf("16 sends from one IP over two instances, LIMIT_SEND_CODE_PER_IP=10/h: %v, want 10×200, 6×429", got)
		}
		sent += got[200]
		got = split(t, insts, 16, true, func(i int) (string, string, string) {
			return "198.51.100.78", uniqueEmail("ip"), "shop"
		})
		t.Logf("16 at once from one IP: %v", got)
		if got[200] != 10 || got[429] != 6 {
			t.Fatalf("16 sends at once from one IP over two instances, LIMIT_SEND_CODE_PER_IP=10/h: %v, want 10×200, 6×429", got)
		}
		sent += got[200]
	})

	t.Run("per-address limit across instances", func(t *testing.T) {
		// 8 for one mailbox (aliases of one inbox), from 8 IPs, in 8
		// projects (no cooldown between them), over both instances: 5 pass.
		for _, atOnce := range []bool{false, true} {
			local := "alias-" + randHex(4)
			got := split(t, insts, 8, atOnce, func(i int) (string, string, string) {
				return fmt.Sprintf("198.51.101.%d", i+1), fmt.Sprintf("%s+%d@example.com", local, i), fmt.Sprintf("p%d", i)
			})
			sent += got[200]
			if atOnce {
				t.Logf("8 at once for one mailbox: %v", got)
			}
			if got[200] != 5 || got[429] != 3 {
				t.Fatalf("8 sends for one mailbox over two instances (at once: %v), LIMIT_CODES_PER_ADDRESS=5/h: %v, want 5×200, 3×429", atOnce, got)
			}
		}
	})

	t.Run("each mail once", func(t *testing.T) {
		const n = 30
		ids := make([]string, n)
		for i := range n {
			r, err := sendFrom(insts[i%2], fmt.Sprintf("198.51.102.%d", i+1), uniqueEmail("once"), "shop")
			if err != nil || r.Status != 200 {
				t.Fatalf("send-code %d: %v %d %s", i, err, r.Status, r.Body)
			}
			ids[i], _ = r.json(t)["delivery_id"].(string)
		}
		sent += n
		for i, id := range ids {
			insts[(i+1)%2].waitStatus(t, id, "sent", 30*time.Second)
		}
	})

	// A duplicate would come from a claim taken over while its send went
	// on: give a late one more than a claim timeout to show.
	time.Sleep(2500 * time.Millisecond)
	msgsA, msgsB := p.SMTP.Messages(), other.Messages()
	counts := perRecipient(msgsA, msgsB)
	t.Logf("%d mails: %d sent by A, %d by B", sent, len(msgsA), len(msgsB))
	if len(msgsA)+len(msgsB) != sent || len(counts) != sent {
		t.Errorf("%d + %d messages to %d recipients, want %d, one each", len(msgsA), len(msgsB), len(counts), sent)
	}
	for to, n := range counts {
		if n != 1 {
			t.Errorf("%s got %d messages, want 1", to, n)
		}
	}
}

// mailCodeOf waits for the mail to email on any of servers and returns
// its code.
func mailCodeOf(t *testing.T, email string, servers ...*smtptest.Server) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, s := range servers {
			for _, m := range s.Messages() {
				if len(m.To) == 1 && strings.EqualFold(m.To[0], email) {
					return smtptest.CodeFrom(m)
				}
			}
		}
	}
	t.Fatalf("no mail reached %s", email)
	return ""
}

// TestClusterMailsTotalAcrossInstances: the global mail cap is one budget
// for every instance: 60 sends split between two instances, from 10 IPs
// and for 60 projects, under LIMIT_MAILS_TOTAL=20/h: 20 accepted, as on
// one instance, and 20 mails sent, one each.
func TestClusterMailsTotalAcrossInstances(t *testing.T) {
	t.Parallel()
	p := clusterProduction(t)
	p.Env["TRUSTED_PROXIES"] = "127.0.0.1/32"
	p.Env["LIMIT_MAILS_TOTAL"] = "20/h"
	a, b := start(t, p.Env), start(t, p.Env)
	got := split(t, []*instance{a, b}, 60, false, func(i int) (string, string, string) {
		return fmt.Sprintf("198.51.100.%d", i%10+1), uniqueEmail("total"), fmt.Sprintf("p%d", i)
	})
	if got[200] != 20 || got[429] != 40 {
		t.Fatalf("60 sends over two instances under LIMIT_MAILS_TOTAL=20/h: %v, want 20×200, 40×429", got)
	}
	p.SMTP.Wait(t, 20, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // room for a 21st
	counts := perRecipient(p.SMTP.Messages())
	if n := len(p.SMTP.Messages()); n != 20 || len(counts) != 20 {
		t.Fatalf("%d mails to %d recipients, want 20, one each", n, len(counts))
	}
}

// pendingJobs is how many of the deployment's mail jobs are claimed and
// not finished, over the 64 streams of prefix on the cluster.
func pendingJobs(t *testing.T, prefix string) int64 {
	t.Helper()
	ctx := context.Background()
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: sharedCluster.Get(t).Addrs()})
	defer cc.Close()
	var n int64
	for p := range authd.Partitions {
		st, err := cc.XPending(ctx, prefix+"{a:"+strconv.Itoa(p)+"}:mail", "authd").Result()
		if err != nil && !goredis.HasErrorPrefix(err, "NOGROUP") && !errors.Is(err, goredis.Nil) {
			t.Fatal(err)
		}
		if st != nil {
			n += st.Count
		}
	}
	return n
}

// TestClusterInstanceKilledMidDelivery: instance A (the real binary) has
// claimed mail jobs, its SMTP sends hanging, when it is killed (SIGKILL:
// no draining, no release). B, running beside it on the same cluster,
// delivers the jobs A never claimed at once and those A held once their
// claims have lapsed (MAIL_CLAIM_TIMEOUT), not before: every address gets
// its mail exactly once.
func TestClusterInstanceKilledMidDelivery(t *testing.T) {
	t.Parallel()
	const n, claimTimeout = 12, 3 * time.Second
	p := clusterProduction(t)
	hang := smtptest.Start(t, smtptest.WithDelay(time.Minute))
	p.Env["LIMIT_SEND_CODE_PER_IP"] = "0"
	p.Env["MAIL_CLAIM_TIMEOUT"] = claimTimeout.String()
	envA := cloneEnv(p.Env)
	envA["SMTP_PORT"] = strconv.Itoa(hang.Port())
	envA["MAIL_WORKERS"] = "2"
	cmd, baseA, _ := startBinary(t, buildAuthd(t), envA)
	a := &instance{URL: baseA}
	emails := make([]string, n)
	for i := range emails {
		emails[i] = uniqueEmail("killed")
		a.sendV2(t, emails[i], "shop")
	}
	waitAttempts(t, hang, 2) // both of A's workers mid-send
	// A claims one job per partition per look, and looks while a worker
	// is idle: wait until it has taken what it will.
	var held int64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if h := pendingJobs(t, p.Env["REDIS_KEY_PREFIX"]); h == held && h >= 2 {
			break
		} else {
			held = h
		}
		if time.Now().After(deadline) {
			t.Fatalf("A holds %d jobs, still changing", held)
		}
	}
	b := start(t, p.Env)
	// B takes what A never claimed; wait for it before the kill.
	p.SMTP.Wait(t, n-int(held), 10*time.Second)
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()

	// A renewed its claims every claimTimeout/3: none lapses sooner than
	// two thirds of the timeout after the kill.
	time.Sleep(claimTimeout / 3)
	if got := len(p.SMTP.Messages()); got != n-int(held) {
		t.Errorf("%v after the kill, %d mails delivered: A's %d claims were taken over before they lapsed", claimTimeout/3, got, held)
	}
	p.SMTP.Wait(t, n, claimTimeout+10*time.Second)
	took := time.Since(killed)
	t.Logf("A held %d of %d jobs; B delivered them %v after the kill (claim timeout %v)", held, n, took.Round(10*time.Millisecond), claimTimeout)
	time.Sleep(500 * time.Millisecond) // room for a duplicate
	counts := perRecipient(p.SMTP.Messages())
	for _, e := range emails {
		if counts[e] != 1 {
			t.Errorf("%s got %d mails, want 1", e, counts[e])
		}
	}
	if len(p.SMTP.Messages()) != n || len(hang.Messages()) != 0 {
		t.Errorf("%d mails delivered, %d accepted by A's server; want %d and 0", len(p.SMTP.Messages()), len(hang.Messages()), n)
	}
	if r := b.verify(t, "v1", emails[0], "shop", mailCodeOf(t, emails[0], p.SMTP)); r.Status != 200 {
		t.Errorf("a code B delivered for A: %d %s", r.Status, r.Body)
	}
}

// TestClusterCrashAfterDataAccepted: at least once, as documented. A sends
// the mail; the SMTP server has the whole message (the end of DATA) and
// keeps it, but A is killed before it hears the server's 250. The job is
// still A's claim, never finished: once it lapses, B sends the mail again.
// The address gets two mails with the same code, which verifies once.
func TestClusterCrashAfterDataAccepted(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	p := clusterProduction(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		if n == 1 { // A's send: held, then accepted
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
		}
		return nil
	}))
	p.Env["MAIL_CLAIM_TIMEOUT"] = "1s"
	cmd, baseA, _ := startBinary(t, buildAuthd(t), p.Env)
	a := &instance{URL: baseA}
	email := uniqueEmail("twice")
	id := a.sendV2(t, email, "shop")
	waitAttempts(t, p.SMTP, 1)
	cmd.Process.Kill()
	cmd.Wait()
	close(release) // the server keeps what it had in full
	first := p.SMTP.Wait(t, 1, 5*time.Second)

	b := start(t, p.Env)
	p.SMTP.Wait(t, 2, 15*time.Second)
	b.waitStatus(t, id, "sent", 5*time.Second)
	time.Sleep(1500 * time.Millisecond) // room for a third
	msgs := p.SMTP.Messages()
	if len(msgs) != 2 || perRecipient(msgs)[email] != 2 {
		t.Fatalf("%d mails (%v), want the one A's server kept and B's resend", len(msgs), perRecipient(msgs))
	}
	code := smtptest.CodeFrom(first[0])
	if smtptest.CodeFrom(msgs[1]) != code || code == "" {
		t.Fatalf("the two mails carry %q and %q, want one code", code, smtptest.CodeFrom(msgs[1]))
	}
	if r := b.verify(t, "v1", email, "shop", code); r.Status != 200 {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	if r := b.verify(t, "v1", email, "shop", code); r.Status != 401 {
		t.Fatalf("verify again: %d %s, want 401", r.Status, r.Body)
	}
}

// TestClusterWaitReplicas: with REDIS_WAIT_REPLICAS=1 send-code answers 200
// while the replicas acknowledge; with them stalled, 503 within
// REDIS_WAIT_TIMEOUT (and a little), the code kept: its mail arrives and
// the code verifies, a retry within the cooldown is 429. Once they run
// again, 200.
func TestClusterWaitReplicas(t *testing.T) {
	t.Parallel()
	const bound = 200 * time.Millisecond
	p := clusterProduction(t)
	p.Env["REDIS_WAIT_REPLICAS"] = "1"
	p.Env["REDIS_WAIT_TIMEOUT"] = bound.String()
	p.Env["LIMIT_SEND_CODE_PER_IP"] = "0"
	inst := start(t, p.Env)
	if code := inst.sendAndRead(t, p.SMTP, uniqueEmail("acked"), "shop"); code == "" {
		t.Fatal("no code")
	}

	c := sharedCluster.Get(t)
	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*testenv.Node
	for m := range masters {
		r, err := c.ReplicasOf(m)
		if err != nil || len(r) != 1 {
			t.Fatalf("replicas of %s: %v %v", m.Addr, r, err)
		}
		replicas = append(replicas, r...)
	}
	resume := func() {
		for _, r := range replicas {
			r.Resume()
		}
	}
	t.Cleanup(resume)
	// Stalled for well under the cluster's node timeout: no failover.
	for _, r := range replicas {
		if err := r.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	email := uniqueEmail("unacked")
	began := time.Now()
	r := inst.send(t, "v2", email, "shop")
	took := time.Since(began)
	retry := inst.send(t, "v2", email, "shop")
	resume()
	if r.Status != 503 || r.detail() != "Service temporarily unavailable" {
		t.Fatalf("replicas stalled: %d %s, want 503", r.Status, r.Body)
	}
	if took < bound || took > bound+time.Second {
		t.Errorf("replicas stalled: answered after %v, want REDIS_WAIT_TIMEOUT %v (and a little)", took, bound)
	}
	if retry.Status != 429 || retry.Header.Get("Retry-After") == "" {
		t.Errorf("retry within the cooldown: %d %s, want 429 with Retry-After: the first code is kept", retry.Status, retry.Body)
	}
	code := mailCodeOf(t, email, p.SMTP)
	if v := inst.verify(t, "v1", email, "shop", code); v.Status != 200 {
		t.Errorf("the code of the 503, mailed all the same: %d %s", v.Status, v.Body)
	}
	if !strings.Contains(inst.Logs.String(), "0 of 1 replicas acknowledged the write within 200ms") {
		t.Errorf("the 503's cause is not logged:\n%s", grepLines(inst.Logs.String(), "unavailable"))
	}
	if code := inst.sendAndRead(t, p.SMTP, uniqueEmail("resumed"), "shop"); code == "" {
		t.Fatal("no code")
	}
}
