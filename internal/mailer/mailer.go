// Package mailer sends verification mails: SMTPSender over SMTP (go-mail
// opens the sessions; the mails and each one's transaction, pipelined
// when offered, are ours), LogSender for development, and the templates
// both render. The delivery of the queued jobs is
// internal/delivery's.
//
// Nothing here logs a code, except LogSender, whose log is the mailbox in
// development mode. Addresses are logged masked (authd.MaskEmail).
package mailer
