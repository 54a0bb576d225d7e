package runnerapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
)

// secRecordHandler is a log handler of the kind a caller writes: it renders each value itself, with fmt's %+v or
// with json.Marshal, as it finds it in the record (without resolving LogValuers) or resolved.
type secRecordHandler struct {
	render  func(v any) string
	resolve bool
	attrs   []slog.Attr
	mu      *sync.Mutex
	out     *bytes.Buffer
}

func (h *secRecordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *secRecordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var write func(a slog.Attr) bool
	write = func(a slog.Attr) bool {
		v := a.Value
		if h.resolve {
			v = v.Resolve()
		}
		if v.Kind() == slog.KindGroup {
			// A group's attributes are values of their own, rendered in turn.
			for _, ga := range v.Group() {
				write(slog.Attr{Key: a.Key + "." + ga.Key, Value: ga.Value})
			}
			return true
		}
		fmt.Fprintf(h.out, "%s=%s ", a.Key, h.render(v.Any()))
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	h.out.WriteString(r.Message + "\n")
	return nil
}

func (h *secRecordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *secRecordHandler) WithGroup(string) slog.Handler { return h }

// secLogHandlers are the handlers the sweep logs through: slog's own and a caller's.
func secLogHandlers(out *bytes.Buffer, mu *sync.Mutex) map[string]slog.Handler {
	w := &secLockedWriter{w: out, mu: mu}
	plus := func(v any) string { return fmt.Sprintf("%+v", v) }
	sharp := func(v any) string { return fmt.Sprintf("%#v", v) }
	marshal := func(v any) string {
		data, err := json.Marshal(v)
		if err != nil {
			return "!" + err.Error()
		}
		return string(data)
	}
	return map[string]slog.Handler{
		"text":              slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}),
		"json":              slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}),
		"custom-%+v":        &secRecordHandler{render: plus, mu: mu, out: out},
		"custom-%#v":        &secRecordHandler{render: sharp, mu: mu, out: out},
		"custom-json":       &secRecordHandler{render: marshal, mu: mu, out: out},
		"custom-%+v-resol":  &secRecordHandler{render: plus, resolve: true, mu: mu, out: out},
		"custom-json-resol": &secRecordHandler{render: marshal, resolve: true, mu: mu, out: out},
	}
}

// secHandedOut returns every kind of value the SDK hands out that holds a secret, from real calls where it can.
func secHandedOut(t *testing.T) map[string]any {
	b := secBuild()
	b.DependsOnBuilds = runnerapi.DependentBuilds{{ID: 6, Name: "build", Token: secBuildToken}}
	cl, err := runnerapi.NewClient("http://coordinator.invalid",
		runnerapi.WithHTTPClient(&http.Client{Transport: &secEchoTransport{}}),
		runnerapi.WithRunnerToken(secRunnerToken), runnerapi.WithBuildToken(secClientBuildToken), runnerapi.WithoutRetries())
	require.NoError(t, err)
	_, transportErr := cl.Artifacts.Delete(context.Background(), 1, runnerapi.WithToken(secBuildToken))
	var te *runnerapi.TransportError
	require.ErrorAs(t, transportErr, &te)

	// An answer whose headers echo the tokens, as a careless proxy's would; its request is gone, as after a
	// call, so that encoding/json can reach its headers.
	echo := http.Header{"X-Echo": {secRunnerToken, secBuildToken}}
	hr := &http.Response{StatusCode: http.StatusForbidden, Header: echo,
		Body: io.NopCloser(strings.NewReader(`{"message":"403 Forbidden"}`))}
	resp := &runnerapi.Response{Response: hr, Attempts: 1}
	er := runnerapi.CheckResponse(hr)
	opts := runnerapi.TraceOptions{Token: secBuildToken, Secrets: secAll, ChunkSize: 4096}

	type nested struct {
		Build   runnerapi.Build
		Builds  []runnerapi.Build
		ByName  map[string]runnerapi.Build
		Ptrs    []*runnerapi.Build
		Vars    []runnerapi.Variable
		Creds   []runnerapi.Credential
		Deps    []runnerapi.DependentBuild
		Opts    runnerapi.TraceOptions
		Resp    *runnerapi.Response
		Err     error
		Errs    []error
		Client  *runnerapi.Client
		Any     any
		AnyList []any
	}
	return map[string]any{
		"Build":            b,
		"*Build":           &b,
		"[]Build":          []runnerapi.Build{b, b},
		"[]*Build":         []*runnerapi.Build{&b},
		"map[string]Build": map[string]runnerapi.Build{"deploy": b},
		"map[Build]":       map[string][]runnerapi.Build{"x": {b}},
		"Variable":         b.Variables[1],
		"Variables":        b.Variables,
		"[]Variable":       []runnerapi.Variable(b.Variables),
		"Credential":       b.Credentials[0],
		"Credentials":      b.Credentials,
		"[]Credential":     []runnerapi.Credential(b.Credentials),
		"DependentBuild":   b.DependsOnBuilds[0],
		"DependentBuilds":  b.DependsOnBuilds,
		"[]DependentBuild": []runnerapi.DependentBuild(b.DependsOnBuilds),
		"TraceOptions":     opts,
		"*TraceOptions":    &opts,
		"[]TraceOptions":   []runnerapi.TraceOptions{opts},
		"Client":           *cl,
		"*Client":          cl,
		"[]*Client":        []*runnerapi.Client{cl},
		"Response":         *resp,
		"*Response":        resp,
		"[]*Response":      []*runnerapi.Response{resp},
		"ErrorResponse":    er,
		"TransportError":   te,
		"error":            transportErr,
		"[]error":          []error{er, te},
		"nested": nested{Build: b, Builds: []runnerapi.Build{b}, ByName: map[string]runnerapi.Build{"b": b},
			Ptrs: []*runnerapi.Build{&b}, Vars: b.Variables, Creds: b.Credentials, Deps: b.DependsOnBuilds, Opts: opts,
			Resp: resp, Err: er, Errs: []error{te}, Client: cl, Any: b, AnyList: []any{b, opts, resp}},
		"*nested": &nested{Builds: []runnerapi.Build{b}, Opts: opts, Resp: resp, Err: te},
	}
}

// TestSecretsNotInAnyLogHandler logs every value the SDK hands out that holds a secret, alone, in a slice, in a
// map and nested in a struct, as an attribute, in a group and through Logger.With, through slog's text and JSON
// handlers and through handlers that render values themselves with fmt or encoding/json, and finds no secret.
func TestSecretsNotInAnyLogHandler(t *testing.T) {
	values := secHandedOut(t)
	var out bytes.Buffer
	var mu sync.Mutex
	for hname, h := range secLogHandlers(&out, &mu) {
		for vname, v := range values {
			t.Run(hname+"/"+vname, func(t *testing.T) {
				mu.Lock()
				out.Reset()
				mu.Unlock()
				l := slog.New(h)
				l.Info("value", "v", v)
				l.Debug("grouped", slog.Group("g", slog.Any("v", v)))
				l.With("w", v).Warn("with")
				l.Info("attrs", slog.Any("v", v))
				mu.Lock()
				text := out.String()
				mu.Unlock()
				assert.Equal(t, 4, strings.Count(text, "\n"), "every record was written: %s", text)
				assert.Empty(t, secFind(text), "%s", text)
				assert.NotContains(t, text, secClientBuildToken, "%s", text)
			})
		}
	}
}

// TestSecretsNotInMarshaledValues: encoding/json shows no secret of a value the SDK hands out, and what is not
// secret stays visible.
func TestSecretsNotInMarshaledValues(t *testing.T) {
	for name, v := range secHandedOut(t) {
		data, err := json.Marshal(v)
		require.NoError(t, err, name)
		assert.Empty(t, secFind(string(data)), "%s: %s", name, data)
		assert.NotContains(t, string(data), secClientBuildToken, "%s: %s", name, data)
	}
	data, err := json.Marshal(secBuild())
	require.NoError(t, err)
	for _, visible := range []string{`"name":"deploy"`, `"repo_url":"https://gitlab-ci-token:[MASKED]@gitlab.example.com/group/app.git"`,
		`"token":"[MASKED]"`, `{"key":"CI_BUILD_ID","value":"7","public":true}`, `"password":"[MASKED]"`, `"username":"ci"`} {
		assert.Contains(t, string(data), visible)
	}
	var decoded runnerapi.Build
	require.NoError(t, json.Unmarshal(data, &decoded))
	assert.Equal(t, "[MASKED]", decoded.Token, "the masked encoding is still a build's JSON")
}

// TestUnredactedBuildKeepsSecretsInJSONOnly: a build stored as an UnredactedBuild comes back whole, secrets and
// all, while printing and logging it still mask them.
func TestUnredactedBuildKeepsSecretsInJSONOnly(t *testing.T) {
	b := secBuild()
	b.DependsOnBuilds = runnerapi.DependentBuilds{{ID: 6, Name: "build", Token: "S3cret-DEP-tok-7g"}}
	data, err := json.Marshal(runnerapi.UnredactedBuild(b))
	require.NoError(t, err)
	var back runnerapi.Build
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, b, back, "the stored build is the build: %s", data)
	assert.Equal(t, b.Secrets(), back.Secrets())

	// Inside a caller's own record, too.
	type job struct {
		Build runnerapi.UnredactedBuild `json:"build"`
	}
	data, err = json.Marshal(job{runnerapi.UnredactedBuild(b)})
	require.NoError(t, err)
	var j job
	require.NoError(t, json.Unmarshal(data, &j))
	assert.Equal(t, b, runnerapi.Build(j.Build))

	var out bytes.Buffer
	u := runnerapi.UnredactedBuild(b)
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		slog.New(h).Info("stored", "build", u)
	}
	assert.Empty(t, secFind(out.String()+secPrinted(u)+secPrinted(&u)), "%s", out.String())
	assert.Contains(t, out.String(), "deploy")
}

// TestMaskedTokenRefused: a build stored with json.Marshal has lost its token to the mask; using it fails at once,
// with an error that says why, instead of as a 403 from the coordinator.
func TestMaskedTokenRefused(t *testing.T) {
	data, err := json.Marshal(secBuild())
	require.NoError(t, err)
	var stored runnerapi.Build
	require.NoError(t, json.Unmarshal(data, &stored))
	tr := &secEchoTransport{}
	cl, err := runnerapi.NewClient("http://coordinator.invalid", runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
		runnerapi.WithRunnerToken(secRunnerToken))
	require.NoError(t, err)
	_, err = cl.NewBuildTraceWriter(context.Background(), &stored, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "UnredactedBuild")
	_, err = cl.Artifacts.Delete(context.Background(), stored.ID, runnerapi.WithToken(stored.Token))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "UnredactedBuild")
	tr.mu.Lock()
	assert.Zero(t, tr.calls, "nothing was sent")
	tr.mu.Unlock()
}
