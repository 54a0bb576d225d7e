// Package runnerapitest provides a fake GitLab CI coordinator for tests, in the manner of net/http/httptest.
//
// NewServer starts, on loopback, a coordinator that serves the CI Builds API v1 as GitLab 8.x and 9.x do: runner
// and build tokens, register with long polling (X-GitLab-Last-Update), updates, trace appends with strict
// Content-Range checking and 416 answers, Build-Status on every accepted trace part, and artifacts upload, download
// (with byte ranges) and delete, with the error bodies real coordinators send. Uploads are streamed to a temporary
// directory, which Close removes.
//
// A test drives it directly: AddRunner and Enqueue set the scene, Cancel and Erase change it, and Build, Trace,
// Artifact, Requests and WaitFinished report what the code under test did:
//
//	srv := runnerapitest.NewServer()
//	defer srv.Close()
//	srv.AddRunner("runner-token")
//	id := srv.EnqueueCommands("unit", "go test ./...")
//
//	// ... run the runner under test against srv.URL with the token "runner-token" ...
//
//	state, err := srv.WaitFinished(ctx, id)
//	trace := srv.Trace(id)
//
// SetFaults injects failures drawn from a seeded random stream per endpoint (5xx and 429 answers, connections
// dropped before or after the request was applied, a trace that loses its tail, delays), so a test can prove that
// a client survives a real network, and repeat a failing run with the same seed. FaultsInjected says what was
// injected.
package runnerapitest
