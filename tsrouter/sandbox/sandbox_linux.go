//go:build linux

package sandbox

import (
	"fmt"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// bindTCPABI is the first Landlock ABI with TCP port rules.
const bindTCPABI = 4

func restrictBind(ports []uint16) (Result, error) {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil {
		abi = 0
	}
	res := Result{ABI: abi, Ports: ports}
	if abi < bindTCPABI {
		return res, fmt.Errorf("landlock ABI %d: %w", abi, ErrUnsupported)
	}
	// Only bind is handled: connect (serves, control, DERP) stays open.
	cfg := landlock.Config{HandledAccessNet: ll.AccessNetBindTCP}
	rules := make([]landlock.Rule, 0, len(ports))
	for _, p := range ports {
		rules = append(rules, landlock.BindTCP(p))
	}
	if err := cfg.RestrictNet(rules...); err != nil {
		return res, fmt.Errorf("landlock: %w", err)
	}
	res.Enforced = true
	return res, nil
}

// Supported says whether this kernel can enforce RestrictBind.
func Supported() bool {
	abi, err := ll.LandlockGetABIVersion()
	return err == nil && abi >= bindTCPABI
}
