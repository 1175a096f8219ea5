package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd/internal/httpapi"
)

// NewLogger writes each line's level as slog itself does (its
// ReplaceAttr writes it as a string, not through encoding/json), and
// durations as Go writes them; an attribute of a group named "level" is
// left as it is.
func TestLoggerLevelsAndDurations(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2} {
		var got, want bytes.Buffer
		httpapi.NewLogger(&got, true, slog.LevelDebug).Log(context.Background(), level, "m",
			slog.Duration("took", 1500*time.Millisecond), slog.Group("g", slog.Int("level", 3)))
		slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug})).Log(context.Background(), level, "m")
		var line, plain map[string]any
		if err := json.Unmarshal(got.Bytes(), &line); err != nil {
			t.Fatalf("%v: %q: %v", level, got.String(), err)
		}
		if err := json.Unmarshal(want.Bytes(), &plain); err != nil {
			t.Fatal(err)
		}
		if line["level"] != plain["level"] || line["took"] != "1.5s" {
			t.Errorf("%v: level %v, took %v; want %v, 1.5s", level, line["level"], line["took"], plain["level"])
		}
		if g, _ := line["g"].(map[string]any); g["level"] != 3.0 {
			t.Errorf("%v: group g = %v, want its level 3", level, line["g"])
		}
		var text bytes.Buffer
		httpapi.NewLogger(&text, false, slog.LevelDebug).Log(context.Background(), level, "m")
		if want := "level=" + level.String() + " "; !strings.Contains(text.String(), want) {
			t.Errorf("%v: text line %q, want %q", level, text.String(), want)
		}
	}
}

// BenchmarkLoggerLine is one line of the kind authd writes most: an
// access line's attributes.
func BenchmarkLoggerLine(b *testing.B) {
	log := httpapi.NewLogger(io.Discard, true, slog.LevelInfo)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "request", slog.String("method", "POST"), slog.String("path", "/api/v1/auth/send-code"),
			slog.Int("status", 200), slog.Duration("duration", 1234*time.Microsecond), slog.String("ip", "192.0.2.1"))
	}
}
