package mailer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/authd/authd/internal/mailer"
)

func TestLogSender(t *testing.T) {
	var buf bytes.Buffer
	s := mailer.NewLogSender(slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	if err := s.Send(context.Background(), message("ana@exämple.com", "246810")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got %d:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"to":                 "ana@exämple.com",
		"subject":            "Your verification code for Example Shop",
		"code":               "246810",
		"expires_in_minutes": float64(5),
	} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v", k, rec[k], want)
		}
	}
}
