package runnerapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScanTopLevelID(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		id   int64
		ok   bool
	}{
		{"GitLab's order, cut in a later field", `{"id":77,"ref":"main","commands":"ech`, 77, true},
		{"spaces around", "{ \"id\" :\t77 ,", 77, true},
		{"id after other members", `{"ref":"a,\"id\":5","options":{"id":9,"x":[{"id":3}]},"tag":false,"id":12}`, 12, true},
		{"id at the end of a whole object", `{"id":12}`, 12, true},
		{"number cut at the end of the text", `{"id":12`, 0, false},
		{"cut before the value", `{"id":`, 0, false},
		{"cut inside the key", `{"i`, 0, false},
		{"only a nested id before the cut", `{"depends_on_builds":[{"id":3,"name":"b`, 0, false},
		{"an id inside a string only", `{"ref":"\"id\":5","sha":"ab`, 0, false},
		{"a string id", `{"id":"12",`, 0, false},
		{"a negative id", `{"id":-1,`, 0, false},
		{"a zero id", `{"id":0,`, 0, false},
		{"a leading zero", `{"id":012,`, 0, false},
		{"a fraction", `{"id":1.5,`, 0, false},
		{"too large", `{"id":99999999999999999999,`, 0, false},
		{"not an object", `[{"id":1},`, 0, false},
		{"empty", ``, 0, false},
		{"an HTML page", `<html>{"id":1,</html>`, 0, false},
		{"an escaped key is not id", `{"i\u0064":5,`, 0, false},
		{"no id in a whole object", `{"ref":"main"}`, 0, false},
		{"too deep before the id", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,"id":4,`, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, ok := scanTopLevelID([]byte(c.data))
			assert.Equal(t, c.ok, ok)
			assert.Equal(t, c.id, id)
		})
	}
}

// cutAnswerServer is a raw HTTP server that reads each request whole, then answers status with a body that
// announces more bytes than it holds, and drops the connection: a 201 cut short, as a proxy's timeout or a lost
// connection leaves it.
func cutAnswerServer(t *testing.T, status int, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					status, http.StatusText(status), len(body)+1000, body)
			}
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// cutBuild is the start of a build's JSON as GitLab's entity writes it, id first, cut inside its commands.
const cutBuild = `{"id":77,"ref":"main","tag":false,"sha":"0123abcd","status":"running","name":"rspec","token":"cut-build-token-3a9f","commands":"bundle exec rsp`

func TestRegisterCutBuildIsHandedBack(t *testing.T) {
	// The coordinator has moved build 77 to running for this runner before its answer was cut: Register must say
	// which build it was, so that the caller can fail it rather than leave it running for nobody.
	c, err := NewClient(cutAnswerServer(t, http.StatusCreated, cutBuild), WithRunnerToken(testRunnerToken), WithoutRetries())
	require.NoError(t, err)
	build, resp, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NotNil(t, build, "the assigned build is handed back")
	assert.Equal(t, int64(77), build.ID)
	assert.Contains(t, err.Error(), "build 77 was assigned to this runner but could not be read in full")
	assert.NotContains(t, err.Error(), "cut-build-token-3a9f")

	// Next hands it back too, rather than polling on and leaving it running.
	build, _, err = c.Builds.Next(context.Background(), nil)
	require.Error(t, err)
	require.NotNil(t, build)
	assert.Equal(t, int64(77), build.ID)
}

func TestRegisterCutBeforeTheIDIsAnError(t *testing.T) {
	c, err := NewClient(cutAnswerServer(t, http.StatusCreated, `{"i`), WithRunnerToken(testRunnerToken), WithoutRetries())
	require.NoError(t, err)
	build, _, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	assert.Nil(t, build, "no ID, nothing to hand back")
}

func TestUploadCreatedWithACutAnswerSucceeds(t *testing.T) {
	// A 201 says the file is stored, whatever becomes of the answer's body.
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := NewClient(cutAnswerServer(t, http.StatusCreated, cutBuild), WithBuildToken("upload-build-token-77"),
		WithLogger(logger))
	require.NoError(t, err)
	build, resp, err := c.Artifacts.Upload(context.Background(), 77, strings.NewReader("zip bytes"), nil)
	require.NoError(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, 1, resp.Attempts, "a stored file is not sent again")
	require.NotNil(t, build)
	assert.Equal(t, int64(77), build.ID, "what could be read")
	assert.Contains(t, logs.String(), "the upload succeeded, but its answer could not be read in full")
	assert.Contains(t, logs.String(), "unexpected EOF")
	assert.NotContains(t, logs.String(), "upload-build-token-77")
	assert.NotContains(t, logs.String(), "cut-build-token-3a9f")
}
