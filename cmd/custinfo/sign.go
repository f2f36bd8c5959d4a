package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
)

func runSign(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "sign", "--url URL (--key KEY | --key-file FILE) [flags] [BODY]\n\nBODY is the JSON to send; without it the body is read from standard input.")
	rawURL := fs.String("url", e.stringEnv("CUSTINFO_URL", ""), "lookup URL, e.g. http://localhost:8080/v1/lookups/customer (env CUSTINFO_URL)")
	key := fs.String("key", "", "the security key as the helpdesk shows it (prefer --key-file: a flag shows in the process list)")
	keyFile := fs.String("key-file", "", "read the key from this file; - for standard input")
	scheme := fs.String("scheme", "body", "signed message: body (body + timestamp) or uri_body (path + body + timestamp)")
	tsFlag := fs.String("timestamp", "", "X-TC-Timestamp to send (epoch ms); default now")
	offset := fs.Duration("offset", 0, "add this to the current time for the timestamp (e.g. -6m to test the window)")
	dryRun := fs.Bool("dry-run", false, "print the headers and a curl command instead of sending")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *rawURL == "" {
		fs.Usage()
		return fmt.Errorf("sign: --url is required")
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("sign: --url %q is not an absolute URL", *rawURL)
	}
	sc, err := signature.ParseScheme(*scheme)
	if err != nil {
		return fmt.Errorf("sign: --scheme: %w", err)
	}
	secret, err := readKey(e, *key, *keyFile)
	if err != nil {
		return err
	}
	var body []byte
	switch {
	case fs.NArg() == 1:
		body = []byte(fs.Arg(0))
	case fs.NArg() > 1:
		return fmt.Errorf("sign: give the body as one argument (quote it)")
	case *keyFile == "-":
		return fmt.Errorf("sign: the key is read from standard input, so give the body as an argument")
	default:
		if body, err = io.ReadAll(io.LimitReader(e.stdin, 1<<20)); err != nil {
			return fmt.Errorf("sign: read body: %w", err)
		}
	}
	ts := *tsFlag
	if ts == "" {
		ts = strconv.FormatInt(time.Now().Add(*offset).UnixMilli(), 10)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	auth := signature.Sign([]byte(secret), sc, path, body, ts)

	if *dryRun {
		fmt.Fprintf(e.stdout, "POST %s\nContent-Type: application/json\nX-TC-Timestamp: %s\nAuthorization: %s\n", u.String(), ts, auth)
		fmt.Fprintf(e.stdout, "signed message: %s\n\n", describeMessage(sc, path, body, ts))
		fmt.Fprintf(e.stdout, "curl -sS -X POST %s -H 'Content-Type: application/json' -H 'X-TC-Timestamp: %s' -H 'Authorization: %s' --data-binary %s\n",
			shellQuote(u.String()), ts, auth, shellQuote(string(body)))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sign: send: %w", err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("sign: read response: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s\n%s", resp.Status, respBody)
	if len(respBody) > 0 && respBody[len(respBody)-1] != '\n' {
		fmt.Fprintln(e.stdout)
	}
	if resp.StatusCode != http.StatusOK {
		return exitError(1)
	}
	return nil
}

// readKey returns the key from the flag or the file, without the line ending
// a copy-paste or an editor adds.
func readKey(e *env, key, file string) (string, error) {
	switch {
	case key != "" && file != "":
		return "", fmt.Errorf("give --key or --key-file, not both")
	case key != "":
		return key, nil
	case file == "-":
		b, err := io.ReadAll(io.LimitReader(e.stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("read key from stdin: %w", err)
		}
		return cleanSecret(string(b))
	case file != "":
		b, err := readFileLimited(file, 4096)
		if err != nil {
			return "", err
		}
		return cleanSecret(string(b))
	default:
		return "", fmt.Errorf("no key: give --key or --key-file")
	}
}

// cleanSecret trims surrounding white space (a stray newline from copy-paste)
// and rejects a key that is empty or has white space inside.
func cleanSecret(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("the key is empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return "", fmt.Errorf("the key contains white space; paste exactly the key the helpdesk shows")
	}
	return s, nil
}

func describeMessage(sc signature.Scheme, path string, body []byte, ts string) string {
	if sc == signature.SchemeURIBody {
		return fmt.Sprintf("path %q + body (%d bytes) + timestamp %q", path, len(body), ts)
	}
	return fmt.Sprintf("body (%d bytes) + timestamp %q", len(body), ts)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
