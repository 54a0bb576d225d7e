package runnerapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// defaultMaxIdleConnsPerHost is how many idle connections to one coordinator the default client keeps for reuse.
// A runner sends at most about two requests per build at once (a trace part, and an update or an artifact
// transfer), so 256 covers 128 concurrent builds; a connection is only ever opened when a request finds none idle
// (and, for a sender's request, still finds none after dialGate's hold), and idle ones close after IdleConnTimeout.
// http.DefaultTransport keeps 2, which under concurrency closes and reopens a connection (a TLS handshake behind
// HTTPS) for most requests.
const defaultMaxIdleConnsPerHost = 256

// sharedTransport is the transport of every client NewClient makes without WithHTTPClient: one pool, so that
// clients for the same coordinator (one per runner token, say) share their connections.
var sharedTransport = sync.OnceValue(newDefaultTransport)

// NewTransport returns a new transport set up as the one NewClient's clients share by default, for a client that
// needs settings of its own, such as a private CA's certificate in TLSClientConfig: change what you need and pass
// it in an http.Client with WithHTTPClient. It is a clone of http.DefaultTransport (proxies from the environment,
// HTTP/2 over TLS, and an ExpectContinueTimeout, which lets a refused upload be answered before its body is sent)
// that keeps up to 256 idle connections per coordinator, where http.DefaultTransport keeps 2, and whose dialer
// spares its pool the connections that builds starting together would open beyond their need. Replacing its
// DialContext gives up the latter.
func NewTransport() *http.Transport { return newDefaultTransport() }

// newDefaultTransport is http.DefaultTransport with room for a runner's concurrency (NewTransport).
func newDefaultTransport() *http.Transport {
	t := defaultTransportClone()
	t.MaxIdleConnsPerHost = defaultMaxIdleConnsPerHost
	// The per-host bound is the one that matters; a total below it (http.DefaultTransport has 100) would undo it.
	t.MaxIdleConns = 0
	if t.DialContext != nil {
		t.DialContext = newDialGate(t.DialContext, dialHold).dial
	}
	return t
}

// defaultTransportClone returns a clone of http.DefaultTransport or, when a program has replaced it with a
// RoundTripper of another type (httpmock.Activate does), a transport set up as it is documented to be.
func defaultTransportClone() *http.Transport {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
