package asyncreq

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWebhookAddressPolicy(t *testing.T) {
	cases := []struct {
		addr               string
		strict, loop, priv bool // allowed by default, with loopback, with private
	}{
		{"93.184.215.14", true, true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true, true},
		{"127.0.0.1", false, true, false},
		{"127.9.9.9", false, true, false},
		{"::1", false, true, false},
		{"::ffff:127.0.0.1", false, true, false},
		{"10.0.0.1", false, false, true},
		{"172.16.5.4", false, false, true},
		{"192.168.1.1", false, false, true},
		{"::ffff:10.0.0.1", false, false, true},
		{"fd12:3456::1", false, false, true},
		{"100.64.0.1", false, false, true},
		{"169.254.1.1", false, false, true},
		{"fe80::1", false, false, true},
		{"169.254.169.254", false, false, false},
		{"::ffff:169.254.169.254", false, false, false},
		{"169.254.170.2", false, false, false},
		{"100.100.100.200", false, false, false},
		{"fd00:ec2::254", false, false, false},
		{"0.0.0.0", false, false, false},
		{"::", false, false, false},
		{"224.0.0.1", false, false, false},
		{"ff02::1", false, false, false},
		{"255.255.255.255", false, false, false},
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		assert.Equal(t, c.strict, addressPolicy{}.allowed(a), "%s by default", c.addr)
		assert.Equal(t, c.loop, addressPolicy{loopback: true}.allowed(a), "%s with loopback", c.addr)
		assert.Equal(t, c.priv, addressPolicy{private: true}.allowed(a), "%s with private", c.addr)
	}
}
