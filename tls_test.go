package runnerapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
)

// tlsCoordinator is a coordinator on HTTPS with a self-signed certificate that hands out one build.
func tlsCoordinator() *httptest.Server {
	return httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ci/api/v1/builds/register" || r.FormValue("token") != "runner-token" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(runnerapi.Build{ID: 1, Name: "tls", Token: "build-token"})
	}))
}

// TestTLSVerifiedByDefault: a client made without WithHTTPClient, or with a client that sets no roots of its own,
// refuses a certificate it cannot verify, says why, and sends nothing.
func TestTLSVerifiedByDefault(t *testing.T) {
	hostileLeakCheck(t)
	srv := tlsCoordinator()
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for name, opts := range map[string][]runnerapi.Option{
		"default client":  nil,
		"caller's client": {runnerapi.WithHTTPClient(&http.Client{Transport: tr})},
	} {
		t.Run(name, func(t *testing.T) {
			cl, err := runnerapi.NewClient(srv.URL, append(opts, runnerapi.WithRunnerToken("runner-token"), runnerapi.WithoutRetries())...)
			require.NoError(t, err)
			build, _, err := cl.Builds.Register(context.Background(), nil)
			require.Error(t, err)
			assert.Nil(t, build)
			var uae x509.UnknownAuthorityError
			var cve *tls.CertificateVerificationError
			assert.True(t, errors.As(err, &uae) || errors.As(err, &cve), "%T: %v", err, err)
			var te *runnerapi.TransportError
			assert.ErrorAs(t, err, &te)
			assert.Contains(t, err.Error(), "certificate")
			assert.NotContains(t, err.Error(), "runner-token")
		})
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// TestTLSPrivateCA: a coordinator whose certificate comes from a private CA is trusted by adding that CA to the
// caller's HTTP client (TestTLSVerifiedByDefault shows it is refused without).
func TestTLSPrivateCA(t *testing.T) {
	hostileLeakCheck(t)
	srv := tlsCoordinator()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithHTTPClient(&http.Client{Transport: tr}), runnerapi.WithRunnerToken("runner-token"))
	require.NoError(t, err)
	build, _, err := cl.Builds.Register(context.Background(), nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1), build.ID)

}

// A coordinator whose certificate is signed by a private CA: give the SDK an HTTP client that trusts that CA, here
// read from PEM as it would be from a file. TLS verification is never turned off for this.
func ExampleWithHTTPClient_privateCA() {
	srv := tlsCoordinator() // a coordinator with a certificate no public CA signed
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}) // os.ReadFile("ca.pem")

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		panic("no certificate in ca.pem")
	}
	tr := runnerapi.NewTransport() // the default client's settings, its pool and dialer
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	defer tr.CloseIdleConnections()

	c, err := runnerapi.NewClient(srv.URL,
		runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
		runnerapi.WithRunnerToken("runner-token"))
	if err != nil {
		panic(err)
	}
	build, _, err := c.Builds.Register(context.Background(), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("build", build.ID, build.Name)
	// Output: build 1 tls
}
