package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/testenv"
)

// The Redis client was chosen with this benchmark: the send-code ceiling
// (a bare handler running authd's issue script) on go-redis and on rueidis,
// in one run.
//
//	go test -run '^$' -bench 'SendCeiling' -benchtime 20000x ./cmd/authd
func BenchmarkSendCeiling(b *testing.B) {
	b.Run("go-redis", func(b *testing.B) {
		srv, _ := benchCeiling(b)
		run := randHex(4)
		load(b, srv.URL+"/send", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
		})
	})
	b.Run("rueidis", func(b *testing.B) {
		lib, err1 := os.ReadFile("../../internal/redis/lib.lua")
		body, err2 := os.ReadFile("../../internal/redis/issue.lua")
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		script := rueidis.NewLuaScript(string(lib) + "\n" + string(body))
		opt, err := rueidis.ParseURL(testenv.RedisURL(b))
		if err != nil {
			b.Fatal(err)
		}
		client, err := rueidis.NewClient(opt)
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		prefix := "bench-" + randHex(4) + ":"
		keys, _ := authd.DeriveKeys([]byte(randHex(32)))
		mux := http.NewServeMux()
		mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				Email     string `json:"email"`
				ProjectID string `json:"project_id"`
			}
			if json.NewDecoder(r.Body).Decode(&in) != nil {
				http.Error(w, "bad", http.StatusBadRequest)
				return
			}
			now := time.Now()
			tag := prefix + "{a:1}:"
			hash := authd.CodeHash(keys.Code, in.ProjectID, in.Email, "123456")
			res := script.Exec(r.Context(), client,
				[]string{prefix + "{ip:127.0.0.1}:send", prefix + "{p:shop}:mails", tag + "code:" + in.ProjectID + ":" + in.Email, tag + "cool:" + in.ProjectID + ":" + in.Email, tag + "sent:" + in.Email},
				// issue.lua's arguments: now, two limits (off), then the address's.
				[]string{strconv.FormatInt(now.UnixMicro(), 10), "2", "send_per_ip", "0", "0", "mails_per_project", "0", "0",
					"0", "0", "0", "id", string(hash), strconv.FormatInt(now.Add(5*time.Minute).UnixMicro(), 10)})
			if res.Error() != nil {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"message":"Verification code sent successfully"}`))
		})
		srv := httptest.NewServer(mux)
		defer srv.Close()
		run := randHex(4)
		load(b, srv.URL+"/send", 200, func(i int) []byte {
			return []byte(`{"email":"` + benchEmail(run, i) + `","project_id":"shop"}`)
		})
	})
}
