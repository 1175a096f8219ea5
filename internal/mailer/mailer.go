// Package mailer sends verification mails: SMTPSender over SMTP (go-mail
// opens the sessions and builds the mails; each mail's transaction,
// pipelined when offered, is ours), LogSender for development, and the
// templates both render. The delivery of the queued jobs is
// internal/delivery's.
//
// Nothing here logs a code, except LogSender, whose log is the mailbox in
// development mode. Addresses are logged masked (authd.MaskEmail).
package mailer
