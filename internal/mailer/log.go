package mailer

import (
	"context"
	"log/slog"

	"github.com/authd/authd"
)

// LogSender writes each mail to the log instead of sending it.
//
// DEVELOPMENT MODE ONLY. It logs the verification CODE in clear text: in
// development the log is the mailbox. It is the one place in authd where a
// code may be logged; never wire it in production (cmd/authd uses it only
// when nothing external is configured, or with MAIL_BACKEND=log set
// explicitly).
type LogSender struct {
	logger    *slog.Logger
	templates *Templates
}

var _ authd.Sender = (*LogSender)(nil)

// NewLogSender returns a LogSender writing to logger; nil templates means
// the embedded ones (the subject line is rendered as a real mail's).
func NewLogSender(logger *slog.Logger, templates *Templates) *LogSender {
	if templates == nil {
		templates = DefaultTemplates()
	}
	return &LogSender{logger: logger, templates: templates}
}

// Send logs one line with the recipient, the subject and the code. It
// fails only when the templates do (permanently).
func (s *LogSender) Send(ctx context.Context, m authd.Message) error {
	r, err := s.templates.Render(m)
	if err != nil {
		// The templates fail every mail alike.
		return &authd.SendError{Session: true, Setting: settingTemplates, Err: err}
	}
	attrs := []slog.Attr{
		slog.String("to", m.To),
		slog.String("subject", r.Subject),
		slog.String("code", m.Code),
		slog.Int("expires_in_minutes", minutes(m.TTL)),
	}
	if m.Link != "" {
		// The hosted sign-in's mail: its link holds the code already.
		attrs = append(attrs, slog.String("link", m.Link))
	}
	s.logger.LogAttrs(ctx, slog.LevelWarn, "development mail: not sent, the code is in this log line", attrs...)
	return nil
}
