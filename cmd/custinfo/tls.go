package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"
)

// certReloader serves the certificate in certFile and keyFile and reads them
// again on reload, so a renewed certificate needs no restart. A reload that
// fails keeps the previous certificate.
type certReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// newCertReloader loads the certificate once; it fails when the files do.
func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the files and swaps the new certificate in.
func (r *certReloader) reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return fmt.Errorf("parse TLS certificate %s: %w", r.certFile, err)
		}
		cert.Leaf = leaf
	}
	r.cur.Store(&cert)
	return nil
}

// notAfter returns the expiry of the current certificate.
func (r *certReloader) notAfter() time.Time {
	return r.cur.Load().Leaf.NotAfter
}

// tlsConfig returns the server's TLS settings: TLS 1.2 or later, and the
// current certificate for every handshake.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cur.Load(), nil
		},
	}
}
