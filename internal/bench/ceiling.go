package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The physical ceiling of a transfer: the same bytes over loopback with the least work the kernel allows. The
// upload's client sendfiles the file into a TCP socket whose server splices it to /dev/null; the download's server
// sendfiles the file and its client splices the socket into the destination file. No HTTP, no multipart, no
// checksum on the way: the table shows how far every contender, curl included, is from the machine's limit.

// The first byte a ceiling client sends says what it wants.
const (
	rawUpload   = 'U'
	rawDownload = 'D'
)

// startRaw serves the ceiling's protocol on a loopback port until the returned function is called.
func (s *benchServer) startRaw() (stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.rawAddr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveRaw(c.(*net.TCPConn))
		}
	}()
	return func() { _ = ln.Close() }, nil
}

func (s *benchServer) serveRaw(c *net.TCPConn) {
	defer c.Close()
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case rawUpload:
		// Splice to /dev/null, so that the bytes are never copied out of the kernel, then tell the client how
		// many arrived.
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		n, _ := io.Copy(null, c) // (*os.File).ReadFrom(*net.TCPConn): splice
		_ = null.Close()
		s.rawReceived.Store(n)
		var count [8]byte
		binary.BigEndian.PutUint64(count[:], uint64(n))
		_, _ = c.Write(count[:])
	case rawDownload:
		f, err := os.Open(s.artifactPath)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(c, f) // (*net.TCPConn).ReadFrom: sendfile
	}
}

// dialRaw connects to the ceiling's server and says what the connection is for.
func dialRaw(ctx context.Context, addr string, op byte) (*net.TCPConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := conn.(*net.TCPConn)
	if _, err := c.Write([]byte{op}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// childUploadCeiling sendfiles the file into the socket and checks the server got every byte.
func childUploadCeiling(ctx context.Context, p childParams) (childOutput, error) {
	f, err := os.Open(p.Path)
	if err != nil {
		return childOutput{}, err
	}
	defer f.Close()
	start := time.Now()
	c, err := dialRaw(ctx, p.RawAddr, rawUpload)
	if err != nil {
		return childOutput{}, err
	}
	defer c.Close()
	n, err := io.Copy(c, f) // (*net.TCPConn).ReadFrom(*os.File): sendfile
	if err != nil {
		return childOutput{}, fmt.Errorf("ceiling upload: %w", err)
	}
	if err := c.CloseWrite(); err != nil {
		return childOutput{}, err
	}
	var count [8]byte
	if _, err := io.ReadFull(bufio.NewReader(c), count[:]); err != nil {
		return childOutput{}, fmt.Errorf("ceiling upload: reading the server's count: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(count[:])); got != n || n != p.Size {
		return childOutput{}, fmt.Errorf("ceiling upload: sent %d bytes, the server got %d, want %d", n, got, p.Size)
	}
	return childOutput{Bytes: n, TransferNS: time.Since(start).Nanoseconds()}, nil
}

// childDownloadCeiling splices the socket into a temporary file beside the destination and renames it into place,
// as the download contenders do.
func childDownloadCeiling(ctx context.Context, p childParams) (childOutput, error) {
	start := time.Now()
	c, err := dialRaw(ctx, p.RawAddr, rawDownload)
	if err != nil {
		return childOutput{}, err
	}
	defer c.Close()
	tmp, err := os.CreateTemp(filepath.Dir(p.Path), ".download-*")
	if err != nil {
		return childOutput{}, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	n, err := io.Copy(tmp, c)   // (*os.File).ReadFrom(*net.TCPConn): splice
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return childOutput{}, fmt.Errorf("ceiling download: %w", err)
	}
	if n != p.Size {
		return childOutput{}, fmt.Errorf("ceiling download: got %d bytes, want %d", n, p.Size)
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: n, TransferNS: time.Since(start).Nanoseconds()}, nil
}
