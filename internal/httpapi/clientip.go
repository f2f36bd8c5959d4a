package httpapi

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v5"
)

// ClientIPExtractor returns the rule that finds a request's client address,
// for Config.IPExtractor.
//
// With no trusted proxies the client is the socket peer and every header is
// ignored. Otherwise, when the peer is one of the trusted networks, the
// client is the nearest address in X-Forwarded-For, read from the right, that
// is not trusted (Echo's ExtractIPFromXFFHeader); loopback, link-local and
// private addresses are trusted only when listed. A request from any other
// peer is judged by the peer's address, whatever its headers say.
func ClientIPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{
		echo.TrustLoopback(false),
		echo.TrustLinkLocal(false),
		echo.TrustPrivateNet(false),
	}
	for _, p := range trusted {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{
			IP:   net.IP(p.Addr().AsSlice()),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// ParsePrefixes parses a comma-separated list of CIDRs or single addresses
// (taken as /32 or /128), e.g. "10.0.0.0/8, 2001:db8::1".
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8: %w", part, err)
			}
			if p.Addr().Zone() != "" {
				return nil, fmt.Errorf("%q: zones are not supported", part)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR: %w", part, err)
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("%q: zones are not supported", part)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
