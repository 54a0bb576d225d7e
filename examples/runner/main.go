//go:build unix

// Command runner is a minimal CI runner built only on runnerapi's public API. It registers itself with a
// coordinator, takes builds, unpacks the artifacts of the builds they depend on, runs their commands with "sh -e",
// streams the output as the build's trace, runs their after_script, uploads their artifacts and reports the result.
//
// Usage:
//
//	runner register -url URL -registration-token TOKEN [-api v1|v4|auto] [-description D] [-tag-list a,b] [-run-untagged] [-locked]
//	runner unregister -url URL -token TOKEN [-api v1|v4|auto]
//	runner [run] [-url URL] [-token TOKEN] [-api v1|v4|auto] [-once] [-concurrent N] [-workdir DIR] [-interval 3s] [-request-timeout 1m]
//		[-after-script-timeout 5m]
//
// Every command speaks the runner API v4 (/api/v4, every GitLab since 9.0) or the CI Builds API v1 (/ci/api/v1,
// GitLab 8.x and 9.x), as -api says. The default, auto, asks the coordinator first with one small request
// (Client.DetectAPI) and logs the answer. Running a build is written once for both APIs; on v4 the final update
// also carries the trace's checksum and size, the exit code and the failure reason, and a graceful cancel
// (Job-Status: canceling) stops the script, runs the after_script and reports the job, which GitLab then records
// as canceled.
//
// register prints the new runner token alone on stdout, so that TOKEN=$(runner register ...) works; everything
// else the runner says goes to stderr, one line at a time with a timestamp. Tokens can come from the environment
// instead of flags, which keeps them out of ps: REGISTRATION_TOKEN for register, RUNNER_TOKEN for the others.
//
// run is the default. Without -url it starts an embedded fake coordinator (runnerapitest) with a two-build demo
// pipeline, runs both builds, prints their traces and a summary, and exits; -api v1 or v4 runs it over that API
// (auto finds v4, which the embedded coordinator speaks beside v1).
//
// A failure that may pass (a 5xx or 429 answer, a refused or dropped connection, a timeout) is logged and waited
// out, at start-up as later. What waiting cannot mend ends the runner at once with one line: a refused token, an
// address that does not serve the CI API, a certificate that does not verify, a malformed URL.
//
// Signals: SIGQUIT stops taking builds and lets the running ones finish; SIGINT or SIGTERM cancels the running
// builds (their processes are killed, their traces delivered and they are reported failed); a second SIGINT or
// SIGTERM exits at once, without reporting anything more.
//
// Exit status: 0 when the runner stopped as asked (or after -once) having reported every build it took, whatever
// the builds' own results; 1 when it could not go on, a build's end could not be reported, or a second signal cut
// it short; 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unicode"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	os.Exit(run(context.Background(), os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, signals: signals}))
}

// env is what run takes from the process it runs in, so that tests can give their own.
type env struct {
	stdout, stderr io.Writer
	// signals are the signals the runner obeys; nil for none.
	signals <-chan os.Signal
	// builds, when not nil, counts the builds in progress: an exit forced by a second signal does not wait for
	// them, and a test can.
	builds *sync.WaitGroup
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// errUsage marks an error in the command line.
var errUsage = errors.New("usage")

// run is the whole program but for the process it runs in. Ending ctx has the effect of a SIGINT.
func run(ctx context.Context, args []string, e env) int {
	if e.builds == nil {
		e.builds = new(sync.WaitGroup)
	}
	command, args := "run", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	}
	var err error
	switch command {
	case "run":
		err = runCommand(ctx, args, e)
	case "register":
		err = registerCommand(ctx, args, e)
	case "unregister":
		err = unregisterCommand(ctx, args, e)
	default:
		err = fmt.Errorf("%w: unknown command %q: want register, unregister or run", errUsage, command)
	}
	var fe *fatalError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "runner: %s (see -h)\n", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return exitUsage
	case errors.As(err, &fe):
		// Already said in the log.
		return exitFail
	default:
		fmt.Fprintln(e.stderr, "runner:", oneLine(err.Error()))
		return exitFail
	}
}

// fatalError is a reason to stop that the log has already told.
type fatalError struct{ msg string }

func (e *fatalError) Error() string { return e.msg }

// oneLine makes s one line of the log: newlines become spaces, and the other control characters and line
// separators are escaped, since what a build or a coordinator sends (a build's name, an error's text) must not
// forge a line or rewrite the operator's terminal with a carriage return or an escape sequence.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteByte(' ')
		case r == '\t' || !unicode.IsControl(r) && r != '\u2028' && r != '\u2029':
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// newFlagSet returns a flag set for command that reports errors through run, in one line, and prints its usage on
// stdout for -h.
func newFlagSet(command string) *flag.FlagSet {
	fs := flag.NewFlagSet("runner "+command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args into fs, printing usage on stdout for -h and refusing stray arguments.
func parse(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stdout, "Usage: "+usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return err
	case err != nil:
		return fmt.Errorf("%w: %v", errUsage, err)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// tokenFrom returns the flag's token, or the environment variable's when the flag is empty.
func tokenFrom(flagValue, variable string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv(variable)
}
