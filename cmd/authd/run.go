package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/httpapi"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Exit codes: 0 success, 1 failure (configuration, a dependency, a
// command's work), 2 bad usage.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// A command is one of authd's commands: what it takes, what it needs of
// the configuration, and what it does. Every command parses its command
// line the same way (positional arguments, then --flag value or
// --flag=value) and answers --help with its own usage.
type command struct {
	name    string   // "users show"
	args    []string // its positional arguments, all required
	flags   []flagDef
	summary string // one line, for the list of commands
	about   string // what it does, for its --help
	example string
	needs   config.Need
	run     func(ctx context.Context, x *invocation) error
}

// flagDef is a command's flag: --name value.
type flagDef struct {
	name, value string
	wants       string             // "a duration such as 5m": what a bad value is told
	help        string             // for the usage
	check       func(string) error // nil: any value
}

// invocation is one run of a command: its configuration, its arguments and
// its world.
type invocation struct {
	cfg    config.Config
	log    *slog.Logger
	args   []string
	flags  map[string]string // as given, checked
	stdin  io.Reader
	stdout io.Writer
	// load reads more of the configuration, for a command that needs a
	// part only on one of its paths (proof verify's SECRET_KEY).
	load func(config.Need) (config.Config, error)
}

// run is authd: main only calls it, the end-to-end tests too.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd, rest, err := findCommand(args)
	if err != nil {
		return err
	}
	if cmd == nil { // authd --help, or a group's: authd users --help
		fmt.Fprint(stdout, usage(rest...))
		return nil
	}
	if slices.ContainsFunc(rest, isHelp) {
		fmt.Fprint(stdout, cmd.usage())
		return nil
	}
	x := &invocation{stdin: stdin, stdout: stdout, flags: map[string]string{},
		load: func(n config.Need) (config.Config, error) { return config.Load(getenv, ".env", n) }}
	if err := cmd.parse(rest, x); err != nil {
		return err
	}
	if cmd.needs == config.Nothing {
		return cmd.run(ctx, x)
	}
	if x.cfg, err = config.Load(getenv, ".env", cmd.needs); err != nil {
		return err
	}
	x.log = httpapi.NewLogger(stderr, x.cfg.LogFormat == "json", x.cfg.LogLevel)
	return cmd.run(ctx, x)
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "help" }

// findCommand returns the command args name and the arguments after its
// name; nil for authd's own --help.
func findCommand(args []string) (*command, []string, error) {
	if len(args) == 0 {
		return &commands[0], nil, nil // serve
	}
	if isHelp(args[0]) {
		return nil, nil, nil
	}
	var group []string
	for i := range commands { // a longer name comes before its prefix
		c := &commands[i]
		if words := strings.Fields(c.name); len(words) <= len(args) && slices.Equal(words, args[:len(words)]) {
			return c, args[len(words):], nil
		}
		if strings.Fields(c.name)[0] == args[0] {
			group = append(group, "  "+c.synopsis())
		}
	}
	switch {
	case len(group) == 0:
		return nil, nil, usageError{fmt.Sprintf("authd: unknown command %q\n\n%s", args[0], usage())}
	case len(args) > 1 && isHelp(args[1]):
		return nil, args[:1], nil
	}
	return nil, nil, usageError{fmt.Sprintf("authd %s: want one of\n%s\n\n%s", args[0], strings.Join(group, "\n"), footer)}
}

// parse reads the command line after the command's name into x.
func (c *command) parse(args []string, x *invocation) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			x.args = append(x.args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		k := slices.IndexFunc(c.flags, func(f flagDef) bool { return f.name == name })
		if k < 0 {
			flag, _, _ := strings.Cut(a, "=")
			return usageError{fmt.Sprintf("authd %s: unknown flag %s\n\n%s", c.name, flag, c.usage())}
		}
		f := c.flags[k]
		if !hasValue {
			if i+1 == len(args) {
				return usageError{fmt.Sprintf("authd %s: --%s wants %s", c.name, name, f.wants)}
			}
			i++
			value = args[i]
		}
		if f.check != nil && f.check(value) != nil {
			return usageError{fmt.Sprintf("authd %s: --%s wants %s", c.name, name, f.wants)}
		}
		x.flags[name] = value
	}
	if len(x.args) != len(c.args) {
		return usageError{fmt.Sprintf("authd %s: want %s, got %d argument(s)\n\n%s", c.name, c.synopsis(), len(x.args), c.usage())}
	}
	return nil
}

// duration returns the duration flag name (checked by parse), or def.
func (x *invocation) duration(name string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(x.flags[name])
	if err != nil {
		return def
	}
	return d
}

// durationAtLeast checks a flag that wants a duration of at least min.
func durationAtLeast(min time.Duration) func(string) error {
	return func(v string) error {
		if d, err := time.ParseDuration(v); err != nil || d < min {
			return errors.New("bad duration")
		}
		return nil
	}
}

const footer = `Exit codes: 0 success; 1 failure (configuration, a dependency, the command's
work, not ready, an invalid proof, no such user); 2 bad usage.
All commands: authd --help (serve, migrate, users, keys, proof, healthcheck,
version). Configuration comes from the environment and an optional .env file
(README.md, Configuration).
`

func (c *command) synopsis() string {
	s := "authd " + c.name
	for _, a := range c.args {
		s += " " + a
	}
	for _, f := range c.flags {
		s += " [--" + f.name + " " + f.value + "]"
	}
	return s
}

func (c *command) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", c.synopsis(), c.about)
	if len(c.flags) > 0 {
		b.WriteString("\nFlags:\n")
		for _, f := range c.flags {
			fmt.Fprintf(&b, "  --%s %s\t%s\n", f.name, f.value, f.help)
		}
	}
	fmt.Fprintf(&b, "\nExample:\n  %s\n\nReads: %s.\n%s", c.example, c.needs, footer)
	return b.String()
}

// usage lists the commands, or those of one group (users, keys, ...).
func usage(group ...string) string {
	var b strings.Builder
	b.WriteString("authd: email one-time-code authentication\n\nUsage:\n")
	for _, c := range commands {
		if len(group) > 0 && strings.Fields(c.name)[0] != group[0] {
			continue
		}
		if syn := c.synopsis(); len(syn) > 32 {
			fmt.Fprintf(&b, "  %s\n  %-32s %s\n", syn, "", c.summary)
		} else {
			fmt.Fprintf(&b, "  %-32s %s\n", syn, c.summary)
		}
	}
	b.WriteString("\nEvery command takes --help.\n" + footer)
	return b.String()
}
