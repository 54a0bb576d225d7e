package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Hidden subcommands: the harness re-executes itself as a launcher and as a Go contender.
const (
	launcherCmd = "__bench-launcher"
	childCmd    = "__bench-child"
)

// Why a launcher: Go starts children with vfork (CLONE_VM), and Linux then records the parent's peak RSS as the
// child's ru_maxrss at exec. A child of the harness itself would inherit the harness's peak (its server, its file
// generation, testing.Benchmark). The launcher is a small process that only starts contenders and waits for them,
// so the floor its children inherit is its own few MiB, measured and printed as the RSS floor.

// launchRequest asks the launcher to run one contender.
type launchRequest struct {
	Argv      []string `json:"argv"`
	TimeoutMS int64    `json:"timeout_ms"`
}

// launchResult is how one contender's process went.
type launchResult struct {
	WallNS    int64  `json:"wall_ns"`
	MaxRSSKiB int64  `json:"maxrss_kib"`
	UserNS    int64  `json:"user_ns"`
	SysNS     int64  `json:"sys_ns"`
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Err       string `json:"err,omitempty"`
}

// capBuffer keeps the first max bytes written to it and drops the rest, so a chatty child cannot grow the
// launcher's memory.
type capBuffer struct {
	buf bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// launcherMain serves launch requests, one JSON line in and one out, until its input ends.
func launcherMain() int {
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	enc := json.NewEncoder(os.Stdout)
	for {
		var req launchRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return 0
			}
			fmt.Fprintln(os.Stderr, "launcher:", err)
			return 2
		}
		if err := enc.Encode(launchOne(req)); err != nil {
			return 2
		}
	}
}

func launchOne(req launchRequest) launchResult {
	if len(req.Argv) == 0 {
		return launchResult{Err: "empty argv", ExitCode: -1}
	}
	ctx := context.Background()
	if req.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	stdout, stderr := &capBuffer{max: 64 << 10}, &capBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	res := launchResult{WallNS: time.Since(start).Nanoseconds(), ExitCode: -1}
	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.MaxRSSKiB = ru.Maxrss // KiB on Linux
			res.UserNS = time.Duration(ru.Utime.Nano()).Nanoseconds()
			res.SysNS = time.Duration(ru.Stime.Nano()).Nanoseconds()
		}
	}
	if err != nil {
		res.Err = err.Error()
		if ctx.Err() != nil {
			res.Err = fmt.Sprintf("killed after %v: %v", time.Duration(req.TimeoutMS)*time.Millisecond, err)
		}
	}
	res.Stdout, res.Stderr = stdout.buf.String(), stderr.buf.String()
	return res
}

// launcher is the harness's side of a running launcher process.
type launcher struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	enc *json.Encoder
	dec *json.Decoder
}

// startLauncherWith starts the launcher; mod adjusts its command (its environment) before it starts.
func startLauncherWith(exe string, mod func(*exec.Cmd)) (*launcher, error) {
	cmd := exec.Command(exe, launcherCmd)
	cmd.Stderr = os.Stderr
	mod(cmd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the launcher: %w", err)
	}
	return &launcher{cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out))}, nil
}

// run starts argv through the launcher and waits for it. ctx ending kills the launcher, and with it the contender.
func (l *launcher) run(ctx context.Context, argv []string, timeout time.Duration) (launchResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.enc.Encode(launchRequest{Argv: argv, TimeoutMS: timeout.Milliseconds()}); err != nil {
		return launchResult{}, fmt.Errorf("launcher: %w", err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = l.cmd.Process.Kill()
		case <-done:
		}
	}()
	var res launchResult
	if err := l.dec.Decode(&res); err != nil {
		if ctx.Err() != nil {
			return launchResult{}, ctx.Err()
		}
		return launchResult{}, fmt.Errorf("launcher: %w", err)
	}
	return res, nil
}

// close ends the launcher: its input closes and it exits; a launcher that does not is killed.
func (l *launcher) close() {
	_ = l.in.Close()
	done := make(chan struct{})
	go func() { _ = l.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = l.cmd.Process.Kill()
		<-done
	}
}
