// Package mailer sends verification mails: SMTPSender over SMTP (go-mail),
// LogSender for development, the templates both render, Sealer, which
// encrypts mail jobs at rest, and Worker, which delivers the jobs of the
// durable queue the code store keeps (authd.MailQueue).
//
// Nothing here logs a code, except LogSender, whose log is the mailbox in
// development mode. Addresses are logged masked (authd.MaskEmail).
package mailer

import (
	"strings"

	"github.com/authd/authd"
)

// redact removes the address and the code from an error text before it is
// logged: SMTP servers echo recipients in their replies.
func redact(s string, addrs []string, code string) string {
	for _, a := range addrs {
		if a != "" {
			s = strings.ReplaceAll(s, a, authd.MaskEmail(a))
		}
	}
	if code != "" {
		s = strings.ReplaceAll(s, code, "[code]")
	}
	return s
}
