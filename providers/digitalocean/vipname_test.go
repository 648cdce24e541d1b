package digitalocean

import (
	"strings"
	"testing"
)

// A VIP without an address reaches the provider under its role's name; DO
// reserved IPs cannot be found by name, so the error says what to set.
func TestProvider_AssignVIP_NameNotAddress(t *testing.T) {
	p, err := NewProvider(Config{Token: "t", Endpoint: "http://127.0.0.1:1/", Size: "s", Image: "i"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AssignVIP(t.Context(), "lb", "123"); err == nil || !strings.Contains(err.Error(), "vip address") {
		t.Fatalf("AssignVIP(lb) = %v, want an error naming the vip address setting", err)
	}
	if _, err := p.VIPHolder(t.Context(), "lb"); err == nil || !strings.Contains(err.Error(), `VIP "lb" is not a reserved IP`) {
		t.Fatalf("VIPHolder(lb) = %v", err)
	}
}
