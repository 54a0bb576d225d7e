package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The TLS rows of the concurrent scenario: a runner's coordinator is behind TLS, where every connection opened is a
// handshake, and over HTTP/2 one connection serves every request.
const (
	tlsHTTP1 = "HTTP/1.1"
	tlsHTTP2 = "HTTP/2"
)

// tlsServers serves the benchmark server's handler over TLS, one listener speaking HTTP/1.1 only and one offering
// HTTP/2, with a certificate made for 127.0.0.1.
type tlsServers struct {
	// URLs are the servers' base URLs by protocol; CAFile holds the certificate, for SSL_CERT_FILE, which makes
	// it the only root Go's crypto/x509 trusts in the children.
	URLs   map[string]string
	CAFile string
	stop   []func()
}

// startTLS starts the TLS servers, counting their connections with the server's own.
func (s *benchServer) startTLS(dir string) (*tlsServers, error) {
	cert, pemBytes, err := selfSignedLoopback()
	if err != nil {
		return nil, err
	}
	ts := &tlsServers{URLs: map[string]string{}, CAFile: filepath.Join(dir, "bench-ca.pem")}
	if err := os.WriteFile(ts.CAFile, pemBytes, 0o600); err != nil {
		return nil, err
	}
	for _, proto := range []string{tlsHTTP1, tlsHTTP2} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ts.close()
			return nil, err
		}
		srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, ConnState: s.countConn,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		if proto == tlsHTTP1 {
			// An empty map, not nil, keeps net/http from offering HTTP/2.
			srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		ts.stop = append(ts.stop, func() { _ = srv.Close() })
		ts.URLs[proto] = "https://" + ln.Addr().String()
	}
	return ts, nil
}

func (ts *tlsServers) close() {
	for _, stop := range ts.stop {
		stop()
	}
}

// selfSignedLoopback makes a key and a self-signed certificate for 127.0.0.1, and returns the certificate in PEM.
func selfSignedLoopback() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "runnerapi bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
