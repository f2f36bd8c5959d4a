package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeCert writes a new self-signed certificate for 127.0.0.1, ::1 and
// localhost with the given serial number to dir/cert.pem and dir/key.pem
// (each replaced by a rename, as a renewal tool does) and returns it.
func writeCert(t *testing.T, dir string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "custinfo test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return cert
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedSerial opens a new TLS connection to addr, trusting roots, and
// returns the serial number of the certificate the server presents.
func servedSerial(t *testing.T, addr string, roots ...*x509.Certificate) (int64, error) {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

// pollSerial waits up to 20 s until new connections to addr see serial.
func pollSerial(t *testing.T, addr string, serial int64, roots ...*x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := servedSerial(t, addr, roots...)
		if err == nil && got == serial {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate served at %s = serial %d (%v), want %d within 20 s", addr, got, err, serial)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert1 := writeCert(t, dir, 1001)
	s := opsStart(t, serveFlags{
		databaseURL: opsSeed(t),
		tlsCert:     filepath.Join(dir, "cert.pem"),
		tlsKey:      filepath.Join(dir, "key.pem"),
	})
	addr := strings.TrimPrefix(s.base, "https://")

	roots := x509.NewCertPool()
	roots.AddCert(cert1)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	status, body := opsDo(t, client, opsLookup(t, s.base, "customer", opsKey, `{"callNum":"`+opsPhone+`","nation":"82"}`, ""))
	if status != 200 || !strings.Contains(body, "홍길동") {
		t.Errorf("signed lookup over HTTPS = %d %s, want 200 with the customer", status, body)
	}
	resp, err := client.Get(s.base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("HTTPS response TLS state = %+v, want TLS 1.2 or later", resp.TLS)
	}

	// Plain HTTP to the TLS port gets no answer from the API.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), `"status":"ok"`) {
			t.Errorf("plain HTTP to the TLS port = %d %q, want a refusal", resp.StatusCode, b)
		}
	}
	// So does a client that offers only TLS 1.1.
	if conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Errorf("TLS 1.1 handshake succeeded, want it refused")
	}

	// A renewed certificate is served to new connections after SIGHUP.
	cert2 := writeCert(t, dir, 1002)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatalf("send SIGHUP: %v", err)
	}
	pollSerial(t, addr, 1002, cert1, cert2)

	// A broken renewal keeps the working certificate and says so.
	replaceFile(t, filepath.Join(dir, "cert.pem"), []byte("not a certificate"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatalf("send SIGHUP: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.logs.String(), "TLS certificate reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure in the log within 20 s:\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := servedSerial(t, addr, cert1, cert2); err != nil || got != 1002 {
		t.Errorf("after a failed reload the server presents serial %d (%v), want 1002", got, err)
	}
}

func TestCertReloader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, dir, 7)
	r, err := newCertReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.tlsConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2 (%x)", cfg.MinVersion, tls.VersionTLS12)
	}
	serial := func() int64 {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.Int64()
	}
	if got := serial(); got != 7 {
		t.Fatalf("serial = %d, want 7", got)
	}

	// A key that does not match the certificate is refused; the old pair stays.
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeCert(t, dir, 8)
	replaceFile(t, keyFile, oldKey)
	if err := r.reload(); err == nil {
		t.Errorf("reload with a mismatched key: nil error, want one")
	}
	if got := serial(); got != 7 {
		t.Errorf("serial after a failed reload = %d, want 7", got)
	}
	writeCert(t, dir, 9)
	if err := r.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := serial(); got != 9 {
		t.Errorf("serial after reload = %d, want 9", got)
	}
	if r.notAfter().Before(time.Now()) {
		t.Errorf("notAfter = %v, want the future", r.notAfter())
	}
}
